/**
 * The first command: runs one program end to end through the CLI (`durable-sandbox run`) and prints its output,
 * its status and the phase timeline. Brings the local stack up first if it is not running (unless KUBECONFIG /
 * TEMPORAL_ADDRESS point elsewhere) and runs a worker in this process unless --no-worker is given.
 *
 *   npm run demo                                  a built-in Python snippet
 *   npm run demo -- path/to/program.py            a file (language from its ending: .py, .sh, .js, …)
 *   npm run demo -- -e 'echo hi' --language bash  inline code
 *   options: --timeout SECONDS, --id EXECUTION_ID, --memory 256Mi, --cpu 500m, --no-worker, and any other
 *   `durable-sandbox run` option
 */
import { main } from '../cli/main';

const SAMPLE = `import platform, sys
print("hello from", platform.system(), platform.release())
print("this line goes to stderr", file=sys.stderr)
print(sum(i * i for i in range(10)))
`;

const argv = process.argv.slice(2);
const noWorker = argv.includes('--no-worker');
const rest = argv.filter((a) => a !== '--no-worker');
const hasProgram =
  rest.includes('-e') ||
  rest.some(
    (a, i) =>
      !a.startsWith('-') &&
      ![
        '--language',
        '-l',
        '--timeout',
        '-t',
        '--id',
        '--memory',
        '--cpu',
        '--file',
        '--env',
        '--wait',
        '--save-files',
      ].includes(rest[i - 1] ?? ''),
  );

main(['run', ...(hasProgram ? [] : ['-e', SAMPLE]), ...rest, '--timeline', '--worker', noWorker ? 'no' : 'yes']).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);

/**
 * Runs one program end to end and prints its result: status, exit code, stdout, stderr and the phase timeline.
 * Brings the local stack up first if it is not running (unless KUBECONFIG / TEMPORAL_ADDRESS point elsewhere),
 * and runs a worker in this process unless --no-worker is given.
 *
 *   npm run demo                                  a built-in Python snippet
 *   npm run demo -- path/to/program.py            a file (language from its extension: .py, .sh)
 *   npm run demo -- -e 'echo hi' --language bash  inline code
 *   options: --timeout SECONDS, --id EXECUTION_ID, --memory 256Mi, --cpu 500m, --no-worker
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { SandboxClient, type ExecutionInput, type ExecutionResult, type Language } from '../client';
import { loadConfig } from '../worker/config';
import { applyStackEnv, localSides, PROJECT_ROOT } from '../worker/stack-env';
import { startInProcessWorker } from '../worker/in-process';

const SAMPLE = `import platform, sys
print("hello from", platform.system(), platform.release())
print("this line goes to stderr", file=sys.stderr)
print(sum(i * i for i in range(10)))
`;

function ensureLocalStack(): void {
  const sides = localSides();
  if (!sides.kube && !sides.temporal) return;
  const stack = path.join(PROJECT_ROOT, 'scripts', 'stack');
  const status = spawnSync('bash', [path.join(stack, 'status.sh')], { stdio: 'ignore' });
  if (status.status === 0) return;
  console.log('The local stack is not running: bringing it up (the first time builds it, which takes a while).');
  const up = spawnSync('bash', [path.join(stack, 'up.sh')], { stdio: 'inherit' });
  if (up.status !== 0) throw new Error('could not bring the local stack up (see the messages above)');
}

function print(r: ExecutionResult): void {
  const start = r.timeline[0]?.at ?? 0;
  console.log(`\nexecution ${r.executionId}: ${r.status}${r.exitCode !== null ? ` (exit code ${r.exitCode})` : ''}`);
  if (r.error) console.log(`error: ${r.error.reason}: ${r.error.message}`);
  const where = r.sandbox === 'warm' ? 'a warm pool pod' : `job ${r.kubernetes.job}`;
  console.log(`attempts: ${r.attempts}; ${where} in ${r.kubernetes.namespace}, pod ${r.kubernetes.pod ?? '-'} on ${r.kubernetes.node ?? '-'}`);
  const flag = (i: ExecutionResult['stdoutInfo']) => (i.truncated ? ` (truncated: ${i.capturedBytes} of ${i.totalBytes} bytes)` : '');
  console.log(`\n--- stdout${flag(r.stdoutInfo)}\n${r.stdout}--- stderr${flag(r.stderrInfo)}\n${r.stderr}---`);
  console.log('\ntimeline:');
  for (const e of r.timeline) {
    console.log(`  +${String(e.at - start).padStart(6)} ms  ${e.phase}${r.attempts > 1 ? ` (attempt ${e.attempt})` : ''}`);
  }
}

async function run(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      e: { type: 'string' },
      language: { type: 'string' },
      timeout: { type: 'string' },
      id: { type: 'string' },
      memory: { type: 'string' },
      cpu: { type: 'string' },
      'no-worker': { type: 'boolean', default: false },
    },
  });
  let code = values.e;
  let language = values.language as Language | undefined;
  if (code === undefined && positionals[0]) {
    code = readFileSync(positionals[0], 'utf8');
    language ??= positionals[0].endsWith('.sh') ? 'bash' : 'python';
  }
  const input: ExecutionInput = {
    code: code ?? SAMPLE,
    language: language ?? 'python',
    ...(values.timeout ? { timeoutSeconds: Number(values.timeout) } : {}),
    ...(values.memory || values.cpu ? { limits: { memory: values.memory, cpu: values.cpu } } : {}),
  };

  ensureLocalStack();
  applyStackEnv();
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const config = loadConfig();
  const inProcess = values['no-worker'] ? undefined : await startInProcessWorker(process.env);
  const client =
    inProcess?.client ??
    (await SandboxClient.connect({
      connection: { address: config.temporal.address },
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      policy: config.policy,
    }));
  try {
    const executionId = values.id ?? `demo-${randomUUID()}`;
    console.log(`running ${input.language} (${input.code.length} bytes) as ${executionId}; Temporal UI: ${process.env.TEMPORAL_UI ?? config.temporal.address}`);
    print(await client.executeCode(input, { executionId }));
  } finally {
    if (inProcess) await inProcess.stop();
    else await client.close();
  }
}

run().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

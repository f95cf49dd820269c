/**
 * durable-sandbox: run untrusted code in a durable gVisor sandbox, from a shell.
 *
 *   durable-sandbox run [FILE | - | -e CODE] [--language python|bash] [--timeout S] [--file PATH]... [--env K=V]...
 *                       [--memory Q] [--cpu Q] [--id ID] [--json] [--wait S] [--save-files DIR] [--timeline]
 *                       [--worker auto|yes|no]
 *   durable-sandbox status ID [--json]
 *   durable-sandbox cancel ID
 *   durable-sandbox list [--limit N] [--json]
 *   durable-sandbox mcp [--http PORT] [--host HOST]
 *
 * Temporal comes from TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (TLS: TEMPORAL_TLS_CERT + TEMPORAL_TLS_KEY or
 * TEMPORAL_API_KEY) and the task queue from DS_TASK_QUEUE; without them, the local stack (brought up if needed).
 * `run` takes a worker from the task queue; with none polling (and --worker auto, the default) it runs one in this
 * process for the command, and waits for the execution's cleanup before it exits.
 */
import { parseArgs } from 'node:util';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { InvalidInputError, SandboxClient, TemporalConnectionError, type ExecutionResult } from '../client';
import { ensureLocalStack, applyStackEnv } from '../dev/stack-env';
import { loadConfig } from '../worker/config';
import { EXIT } from './exit-codes';
import type { InProcessWorker } from '../dev/in-process';
import { run, UsageError, type RunArgs } from './run';
import { cancel, list, status } from './inspect';

const USAGE = `usage:
  durable-sandbox run [FILE | - | -e CODE] [--language python|bash] [--timeout S] [--file PATH]... [--env K=V]...
                      [--memory Q] [--cpu Q] [--id ID] [--json] [--wait S] [--save-files DIR] [--timeline]
                      [--worker auto|yes|no]
  durable-sandbox status ID [--json]
  durable-sandbox cancel ID
  durable-sandbox list [--limit N] [--json]
  durable-sandbox mcp [--http PORT] [--host HOST]

exit codes of run: the program's own; ${EXIT.timedOut} timed out, ${EXIT.oomKilled} out of memory, ${EXIT.infraError} infrastructure error,
${EXIT.cancelled} cancelled, ${EXIT.stoppedWaiting} stopped waiting (--wait), ${EXIT.invalidInput} invalid input, ${EXIT.unavailable} Temporal unreachable, ${EXIT.usage} usage`;

function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function connect(): Promise<{ client: SandboxClient; config: ReturnType<typeof loadConfig> }> {
  applyStackEnv();
  const config = loadConfig();
  const client = await SandboxClient.connect({
    temporal: config.temporal,
    taskQueue: config.temporal.taskQueue,
    policy: config.policy,
  });
  return { client, config };
}

async function runCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      e: { type: 'string' },
      language: { type: 'string', short: 'l' },
      timeout: { type: 'string', short: 't' },
      file: { type: 'string', multiple: true },
      env: { type: 'string', multiple: true },
      memory: { type: 'string' },
      cpu: { type: 'string' },
      id: { type: 'string' },
      json: { type: 'boolean', default: false },
      wait: { type: 'string' },
      'save-files': { type: 'string' },
      timeline: { type: 'boolean', default: false },
      worker: { type: 'string', default: 'auto' },
    },
  });
  if (!['auto', 'yes', 'no'].includes(values.worker))
    throw new UsageError(`--worker: auto, yes or no, not "${values.worker}"`);
  const args: RunArgs = {
    file: positionals[0],
    code: values.e,
    language: values.language,
    timeout: values.timeout,
    files: values.file ?? [],
    env: values.env ?? [],
    memory: values.memory,
    cpu: values.cpu,
    id: values.id,
    json: values.json,
    wait: values.wait,
    saveFiles: values['save-files'],
    timeline: values.timeline,
  };
  ensureLocalStack();
  const { client, config } = await connect();
  // No worker serves the task queue (none polls it, or the execution stays queued: a poller the server still lists
  // may have stopped): run one here, for this command. It stays until the execution has cleaned up.
  let starting: Promise<InProcessWorker> | undefined;
  const startHere = (): Promise<InProcessWorker> => {
    starting ??= (async () => {
      if (!values.json)
        say(`[durable-sandbox] no worker serves task queue ${config.temporal.taskQueue}: running one in this process`);
      Runtime.install({ logger: new DefaultLogger('WARN') });
      const { startInProcessWorker } = await import('../dev/in-process');
      return startInProcessWorker(process.env);
    })();
    return starting;
  };
  if (values.worker === 'yes' || (values.worker === 'auto' && (await client.pollers()) === 0)) await startHere();
  try {
    return await run(client, args, {
      ...(values.worker === 'auto' ? { onQueued: () => void startHere() } : {}),
      onResult: async (r: ExecutionResult) => {
        // The result comes before cleanup: an in-process worker must see the cleanup through before it goes.
        if (starting)
          await (
            await starting
          ).client
            .handle(r.executionId)
            .result()
            .catch(() => undefined);
      },
    });
  } finally {
    if (starting) await (await starting.catch(() => undefined))?.stop();
    await client.close();
  }
}

async function mcpCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { http: { type: 'string' }, host: { type: 'string' } } });
  const { client } = await connect();
  const { serveHttp, serveStdio } = await import('../integrations/mcp');
  if (values.http !== undefined) {
    const port = Number(values.http);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new UsageError(`--http takes a port, not "${values.http}"`);
    const server = await serveHttp({ client, port, ...(values.host ? { host: values.host } : {}) });
    say(`MCP endpoint: ${server.url}`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await server.close();
  } else {
    const server = await serveStdio({ client });
    const close = () => void server.close();
    process.once('SIGINT', close);
    process.once('SIGTERM', close);
    await server.closed;
  }
  await client.close();
  return EXIT.ok;
}

async function withClient(fn: (client: SandboxClient) => Promise<number>): Promise<number> {
  const { client } = await connect();
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await runCommand(rest);
      case 'status': {
        const { values, positionals } = parseArgs({
          args: rest,
          allowPositionals: true,
          options: { json: { type: 'boolean', default: false } },
        });
        if (!positionals[0]) throw new UsageError('status needs an execution id');
        return await withClient((c) => status(c, positionals[0], values.json));
      }
      case 'cancel': {
        if (!rest[0]) throw new UsageError('cancel needs an execution id');
        return await withClient((c) => cancel(c, rest[0]));
      }
      case 'list': {
        const { values } = parseArgs({
          args: rest,
          options: { limit: { type: 'string', default: '20' }, json: { type: 'boolean', default: false } },
        });
        return await withClient((c) => list(c, Number(values.limit), values.json));
      }
      case 'mcp':
        return await mcpCommand(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        say(USAGE);
        return command === undefined ? EXIT.usage : EXIT.ok;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (err) {
    if (
      err instanceof UsageError ||
      (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))
    ) {
      say(`durable-sandbox: ${err.message}\n${USAGE}`);
      return EXIT.usage;
    }
    if (err instanceof InvalidInputError) {
      say(`durable-sandbox: invalid input: ${err.message} (limit: ${err.limit})`);
      return EXIT.invalidInput;
    }
    if (err instanceof TemporalConnectionError) {
      say(`durable-sandbox: ${err.message}`);
      return EXIT.unavailable;
    }
    throw err;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`durable-sandbox: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}

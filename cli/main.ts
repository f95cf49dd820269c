/**
 * durable-sandbox: run untrusted code in a durable gVisor sandbox, from a shell.
 *
 *   durable-sandbox run [FILE | - | -e CODE] [--language LANG] [--timeout S] [--file PATH]... [--env K=V]...
 *                       [--memory Q] [--cpu Q] [--id ID] [--json] [--wait S] [--save-files DIR] [--timeline]
 *                       [--worker auto|yes|no]
 *   durable-sandbox status ID [--json]
 *   durable-sandbox cancel ID
 *   durable-sandbox list [--limit N] [--json]
 *   durable-sandbox mcp [--http PORT] [--host HOST] [--worker auto|yes|no] [--one-shot]
 *   durable-sandbox session open | run | list | state | close   (cli/session.ts)
 *
 * Temporal comes from TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (TLS: TEMPORAL_TLS_CERT + TEMPORAL_TLS_KEY or
 * TEMPORAL_API_KEY) and the task queue from DS_TASK_QUEUE; without them, the local stack (brought up if needed).
 * `run` and `mcp` take a worker from the task queue; with none polling (and --worker auto, the default) they run one in
 * this process for the command (cli/command-worker.ts), and nothing it serves outlives the command.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { InvalidInputError, NoWorkerError, SandboxClient, TemporalConnectionError, type Session } from '../client';
import type { SandboxClientLike } from '../integrations/mcp/server';
import { ensureLocalStack, applyStackEnv } from './local-stack';
import { loadConfig } from '../worker/config';
import { EXIT } from './exit-codes';
import { LANGUAGE_NAMES } from '../core/languages';
import { CommandWorker } from './command-worker';
import { ctrlCAsKey } from './keyboard';
import { newExecutionId, QUEUED_FOR_MS, run, UsageError, type RunArgs } from './run';
import { cancel, list, status } from './inspect';
import { SESSION_USAGE, sessionCommand } from './session';

const USAGE = `usage:
  durable-sandbox run [FILE | - | -e CODE] [--language ${LANGUAGE_NAMES.join('|')}] [--timeout S] [--file PATH]... [--env K=V]...
                      [--memory Q] [--cpu Q] [--id ID] [--json] [--wait S] [--save-files DIR] [--timeline]
                      [--worker auto|yes|no]
  durable-sandbox status ID [--json]
  durable-sandbox cancel ID
  durable-sandbox list [--limit N] [--json]
  durable-sandbox mcp [--http PORT] [--host HOST] [--worker auto|yes|no] [--one-shot]
${SESSION_USAGE}

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
  const mode = workerMode(values.worker);
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
  // It stays until the execution has cleaned up.
  const worker = await commandWorker(mode, client, config, (line) => {
    if (!values.json) say(`[durable-sandbox] ${line}`);
  });
  const id = args.id ?? newExecutionId();
  let resultIn = false;
  // Ctrl-C reaches this process alone (see keyboard.ts) and is handled as the signal would be; not while the program
  // itself comes from the terminal (`run -`).
  const releaseKeyboard = args.file === '-' ? () => undefined : ctrlCAsKey(() => process.emit('SIGINT', 'SIGINT'));
  try {
    return await run(
      client,
      { ...args, id },
      {
        ...(mode === 'auto' ? { onQueued: () => void worker.start() } : {}),
        ownWorker: () => worker.started,
        onResult: async () => {
          resultIn = true;
        },
      },
    );
  } finally {
    // Whatever ended the command (its result, Ctrl-C, --wait, an error), nothing it started runs on without a worker.
    await worker.finish([{ id, resultIn }]);
    releaseKeyboard();
    await client.close();
  }
}

type WorkerMode = 'auto' | 'yes' | 'no';

function workerMode(value: string): WorkerMode {
  if (value !== 'auto' && value !== 'yes' && value !== 'no')
    throw new UsageError(`--worker: auto, yes or no, not "${value}"`);
  return value;
}

/**
 * The command's own worker (command-worker.ts), started now with --worker yes, or with auto when none polls the task
 * queue (with auto, the command also starts it later when an execution stays queued: a poller the server still lists
 * may have stopped). Without a warm pool: `run` serves one execution, and an MCP client gives its server about four
 * seconds to exit before it kills it, too little to be sure a pool is emptied.
 */
async function commandWorker(
  mode: WorkerMode,
  client: SandboxClient,
  config: ReturnType<typeof loadConfig>,
  say: (line: string) => void,
): Promise<CommandWorker> {
  const worker = new CommandWorker({ env: process.env, taskQueue: config.temporal.taskQueue, pools: false, say });
  if (mode === 'yes' || (mode === 'auto' && (await client.pollers()) === 0)) await worker.start();
  return worker;
}

async function mcpCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      http: { type: 'string' },
      host: { type: 'string' },
      worker: { type: 'string', default: 'auto' },
      // Every call in a fresh sandbox: no session per connection.
      'one-shot': { type: 'boolean', default: false },
    },
  });
  const mode = workerMode(values.worker);
  const port = values.http === undefined ? undefined : Number(values.http);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535))
    throw new UsageError(`--http takes a port, not "${values.http}"`);
  ensureLocalStack();
  const { client, config } = await connect();
  const worker = await commandWorker(mode, client, config, (line) => say(`[durable-sandbox] ${line}`));
  const started: string[] = [];
  const served = servedClient(
    client,
    mode === 'auto' ? () => void worker.start() : undefined,
    mode === 'auto' ? () => worker.start() : undefined,
    started,
  );
  const newExecutionId = (): string => {
    const id = `mcp-${randomUUID()}`;
    started.push(id);
    return id;
  };
  const { serveHttp, serveStdio } = await import('../integrations/mcp');
  try {
    if (port !== undefined) {
      const server = await serveHttp({
        client: served,
        port,
        newExecutionId,
        sessions: !values['one-shot'],
        ...(values.host ? { host: values.host } : {}),
      });
      say(`MCP endpoint: ${server.url}`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.close();
    } else {
      const server = await serveStdio({ client: served, newExecutionId, sessions: !values['one-shot'] });
      const close = () => void server.close();
      process.once('SIGINT', close);
      process.once('SIGTERM', close);
      await server.closed;
    }
  } finally {
    // The server cancelled its calls in flight; with its own worker, their cleanup is seen through before it stops.
    await worker.finish(started.map((id) => ({ id })));
    await client.close();
  }
  return EXIT.ok;
}

/**
 * The client as the MCP server uses it, starting the command's own worker (once) when a call stays queued: a worker
 * the server still lists as polling may have stopped.
 */
function servedClient(
  client: SandboxClient,
  onQueued: (() => void) | undefined,
  ensureWorker: (() => Promise<unknown>) | undefined,
  started: string[],
): SandboxClientLike {
  const opened = (s: Session): Session => {
    started.push(s.id);
    return s;
  };
  return {
    getExecution: (id) => client.getExecution(id),
    cancelExecution: (id) => client.cancelExecution(id),
    getSession: (id) => client.getSession(id),
    // No worker polls (one went away): start the command's own, then open.
    openSession: async (options) => {
      try {
        return opened(await client.openSession(options));
      } catch (err) {
        if (!(err instanceof NoWorkerError) || !ensureWorker) throw err;
        await ensureWorker();
        // openSession gives a worker that has just started a while to show up.
        return opened(await client.openSession(options));
      }
    },
    executeCode: (input, options = {}) => {
      if (!onQueued) return client.executeCode(input, options);
      let queuedSince: number | undefined;
      return client.executeCode(input, {
        ...options,
        onProgress: (p) => {
          options.onProgress?.(p);
          if (p.stage !== 'queued') return;
          queuedSince ??= Date.now();
          if (Date.now() - queuedSince >= QUEUED_FOR_MS) onQueued();
        },
      });
    },
  };
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
      case 'session':
        return await withClient((c) => sessionCommand(c, rest));
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

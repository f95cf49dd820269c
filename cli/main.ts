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
 *   durable-sandbox worker [--background]
 *
 * Temporal comes from TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE (TLS: TEMPORAL_TLS_CERT + TEMPORAL_TLS_KEY or
 * TEMPORAL_API_KEY) and the task queue from DS_TASK_QUEUE; without them, the local stack (brought up if needed).
 * `run` takes a worker from the task queue; with none polling (and --worker auto, the default) it runs one in this
 * process for the command (cli/command-worker.ts), and nothing it serves outlives the command. `session` and `mcp`
 * need a worker that stays: with none serving (and --worker auto) they start the background worker
 * (cli/background-worker.ts), which stops by itself once nothing of its task queue is open.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { InvalidInputError, SandboxClient, TemporalConnectionError } from '../client';
import { validateInput } from '../core/validate';
import type { SandboxClientLike } from '../integrations/mcp/server';
import { ensureLocalStack, applyStackEnv } from './local-stack';
import { loadConfig } from '../worker/config';
import { EXIT } from './exit-codes';
import { LANGUAGE_NAMES } from '../core/languages';
import { CommandWorker } from './command-worker';
import { ensureStayingWorker, runBackgroundWorker, type StayingWorker } from './background-worker';
import { ctrlCAsKey } from './keyboard';
import { newExecutionId, run, UsageError, type RunArgs } from './run';
import { cancel, list, status } from './inspect';
import { SESSION_USAGE, sessionCommand } from './session';

const USAGE = `usage:
  durable-sandbox run [FILE | - | -e CODE] [--language ${LANGUAGE_NAMES.join('|')}] [--timeout S] [--file PATH]... [--env K=V]...
                      [--allow-net DOMAIN]... [--memory Q] [--cpu Q] [--id ID] [--json] [--wait S] [--save-files DIR]
                      [--save-displays DIR] [--timeline]
                      [--worker auto|yes|no]
  durable-sandbox status ID [--json]
  durable-sandbox cancel ID
  durable-sandbox list [--limit N] [--json]
  durable-sandbox mcp [--http PORT] [--host HOST] [--worker auto|yes|no] [--one-shot] [--allow-net DOMAIN]...
${SESSION_USAGE}
  durable-sandbox worker [--background]

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
      'allow-net': { type: 'string', multiple: true },
      memory: { type: 'string' },
      cpu: { type: 'string' },
      id: { type: 'string' },
      json: { type: 'boolean', default: false },
      wait: { type: 'string' },
      'save-files': { type: 'string' },
      'save-displays': { type: 'string' },
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
    allowNet: values['allow-net'] ?? [],
    memory: values.memory,
    cpu: values.cpu,
    id: values.id,
    json: values.json,
    wait: values.wait,
    saveFiles: values['save-files'],
    saveDisplays: values['save-displays'],
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
      // The server's own allow-list, for every call: never a tool argument the model could widen.
      'allow-net': { type: 'string', multiple: true, default: [] },
    },
  });
  const mode = workerMode(values.worker);
  const port = values.http === undefined ? undefined : Number(values.http);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535))
    throw new UsageError(`--http takes a port, not "${values.http}"`);
  ensureLocalStack();
  const { client, config } = await connect();
  const note = (line: string) => say(`[durable-sandbox] ${line}`);
  // --worker yes: a worker in this process, for as long as the server runs. auto: a worker that stays (the
  // background worker, started if none serves), so that what a connection leaves open (its session's close, an
  // execution's cleanup) is carried out after this process exits, and servers started together share one.
  const worker = new CommandWorker({ env: process.env, taskQueue: config.temporal.taskQueue, pools: false, say: note });
  if (mode === 'yes') await worker.start();
  const staying = mode === 'auto' ? ensureStayingWorker(client, config.temporal, { say: note }) : undefined;
  staying?.catch((err: unknown) => note(`no worker: ${err instanceof Error ? err.message : String(err)}`));
  const started: string[] = [];
  const served = servedClient(client, staying, started);
  const newExecutionId = (): string => {
    const id = `mcp-${randomUUID()}`;
    started.push(id);
    return id;
  };
  const network = values['allow-net'].length ? { allow: values['allow-net'] } : undefined;
  // Checked now (against this process's policy, the worker's ceiling when it is local): a bad list fails at start.
  if (network) validateInput({ code: '0', network }, config.policy);
  const { serveHttp, serveStdio } = await import('../integrations/mcp');
  try {
    if (port !== undefined) {
      const server = await serveHttp({
        client: served,
        port,
        newExecutionId,
        sessions: !values['one-shot'],
        ...(network ? { network } : {}),
        ...(values.host ? { host: values.host } : {}),
      });
      say(`MCP endpoint: ${server.url}`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.close();
    } else {
      const server = await serveStdio({
        client: served,
        newExecutionId,
        sessions: !values['one-shot'],
        ...(network ? { network } : {}),
      });
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
 * The client as the MCP server uses it: each call first waits for the worker the server relies on (the background
 * worker, when it is starting), and the executions and sessions it starts are remembered.
 */
function servedClient(
  client: SandboxClient,
  staying: Promise<StayingWorker> | undefined,
  started: string[],
): SandboxClientLike {
  const ready = async (): Promise<void> => {
    if (staying) await staying;
  };
  return {
    getExecution: (id) => client.getExecution(id),
    cancelExecution: (id) => client.cancelExecution(id),
    getSession: (id) => client.getSession(id),
    openSession: async (options) => {
      await ready();
      const s = await client.openSession(options);
      started.push(s.id);
      return s;
    },
    executeCode: async (input, options = {}) => {
      await ready();
      return client.executeCode(input, options);
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
      case 'session': {
        const sub = rest[0];
        // open, run, state and close need a worker that stays; list reads Temporal's visibility only.
        if (sub !== 'list') ensureLocalStack();
        const { client, config } = await connect();
        try {
          return await sessionCommand(client, rest, (start) =>
            ensureStayingWorker(client, config.temporal, { say: (l) => say(`[durable-sandbox] ${l}`), start }),
          );
        } finally {
          await client.close();
        }
      }
      case 'worker': {
        const { values } = parseArgs({ args: rest, options: { background: { type: 'boolean', default: false } } });
        applyStackEnv();
        if (values.background) return await runBackgroundWorker();
        // A worker in the foreground, until Ctrl-C: the same process as `npm run worker`.
        await import('../worker/main');
        return new Promise<number>(() => undefined);
      }
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

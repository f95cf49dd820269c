/**
 * The background worker: a worker process that the CLI starts for `session` commands and `mcp` when no worker that
 * stays serves the task queue. It outlives the command that started it, later commands find it again, it logs to a
 * file it names, and it stops by itself once no session or execution of its task queue has been open for
 * DS_BACKGROUND_IDLE_SECONDS.
 *
 * One per task queue and machine: it holds a lock that is a Unix socket in Linux's abstract namespace, which the
 * kernel releases when the process dies, however it dies (so a lock is never stale), and on which it answers where
 * it stands. Whether a worker serves is decided on evidence that cannot be minutes old: this socket answering, a
 * poll Temporal saw begin seconds ago, or a worker answering a ping (SandboxClient.workerServes).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NoWorkerError, type SandboxClient } from '../client';
import type { TemporalSettings } from '../client/connection';
import { localSides, PROJECT_ROOT, STACK_DIR } from './local-stack';

/** How a worker names itself to Temporal (its poller identity): what it is, its process and its machine. */
export const WORKER_ROLES = {
  /** Lives as long as one command (`run`, `mcp --worker yes`): it must not be relied on by a session. */
  command: 'durable-sandbox command',
  /** A background worker (this file). */
  background: 'durable-sandbox background',
} as const;

export function workerIdentity(role: keyof typeof WORKER_ROLES, pid = process.pid): string {
  return `${WORKER_ROLES[role]} ${pid}@${os.hostname()}`;
}

/** Whether a poller identity is one that stays (anything but a command's own worker). */
export function staysServing(identity: string): boolean {
  return !identity.startsWith(WORKER_ROLES.command);
}

/** Stops by itself after this long without an open session or execution on its task queue. */
export const DEFAULT_IDLE_SECONDS = 120;
/** Once it has let go of its lock, how long it still serves before it stops (a command that found it just then). */
const LINGER_MS = 5_000;
/** How long a command waits for a background worker to be ready. */
const READY_WITHIN_MS = 120_000;

export interface BackgroundStatus {
  pid: number;
  state: 'starting' | 'ready' | 'stopping';
  taskQueue: string;
  address: string;
  namespace: string;
  log: string;
  startedAt: string;
  idleSeconds: number;
}

type Settings = Pick<TemporalSettings, 'address' | 'namespace'> & { taskQueue: string };

/** What one background worker is for: its task queue on its Temporal, for this user. */
function workerKey(s: Settings): string {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return createHash('sha256').update(`${uid}|${s.address}|${s.namespace}|${s.taskQueue}`).digest('hex').slice(0, 16);
}

/** Where background workers keep their logs and a note of themselves: the local stack's folder when it is used. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DS_STATE_DIR) return env.DS_STATE_DIR;
  if (localSides(env).temporal) return path.join(STACK_DIR, 'workers');
  return path.join(os.homedir(), '.local', 'state', 'durable-sandbox', 'workers');
}

function files(s: Settings, env: NodeJS.ProcessEnv = process.env) {
  const dir = stateDir(env);
  const key = workerKey(s);
  const name = `${s.taskQueue.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60)}-${key}`;
  return {
    dir,
    log: path.join(dir, `${name}.log`),
    note: path.join(dir, `${name}.json`),
    // Linux: the abstract namespace (no file, released with the process); elsewhere a socket file beside the log.
    socket: process.platform === 'linux' ? `\0durable-sandbox/worker/${key}` : path.join(dir, `${key}.sock`),
  };
}

/** Asks the background worker of this task queue where it stands; undefined when there is none. */
export async function askBackground(
  s: Settings,
  env: NodeJS.ProcessEnv = process.env,
): Promise<BackgroundStatus | undefined> {
  const { socket } = files(s, env);
  return new Promise((resolve) => {
    const conn = net.connect(socket);
    let text = '';
    const done = (v: BackgroundStatus | undefined) => {
      conn.destroy();
      resolve(v);
    };
    conn.setTimeout(2000, () => done(undefined));
    conn.on('data', (d) => (text += d.toString()));
    conn.on('end', () => {
      try {
        done(JSON.parse(text) as BackgroundStatus);
      } catch {
        done(undefined);
      }
    });
    conn.on('error', () => done(undefined));
  });
}

export interface StayingWorker {
  /** A background worker of this machine (this file), or a worker that stays found on the task queue. */
  kind: 'background' | 'existing';
  status?: BackgroundStatus;
  /** Whether this call started it. */
  started?: boolean;
}

/**
 * Makes sure a worker that stays serves the task queue: the background worker of this machine (waited for while it
 * starts), else another worker that stays (a fresh poll or a ping it answers; a command's own worker does not
 * count), else a background worker started now. With `start: false` it throws NoWorkerError instead of starting one.
 */
export async function ensureStayingWorker(
  client: SandboxClient,
  settings: Settings,
  options: { say: (line: string) => void; start?: boolean; env?: NodeJS.ProcessEnv },
): Promise<StayingWorker> {
  const env = options.env ?? process.env;
  const status = await untilReady(settings, env);
  if (status) return { kind: 'background', status };
  if (await client.workerServes(undefined, staysServing)) return { kind: 'existing' };
  if (options.start === false)
    throw new NoWorkerError(
      settings.taskQueue,
      `NoWorker: no worker that stays serves task queue ${settings.taskQueue}, and --worker no forbids starting one; ` +
        'nothing ran (start one: `durable-sandbox worker`, `npm run worker`, or the Deployment in k8s/)',
    );
  const { log } = startBackground(settings, env);
  options.say(
    `no worker that stays serves task queue ${settings.taskQueue}: starting one in the background (log: ${log})`,
  );
  const started = Date.now();
  for (;;) {
    const s = await untilReady(settings, env);
    if (s) {
      options.say(
        `background worker ready (pid ${s.pid}, ${((Date.now() - started) / 1000).toFixed(1)} s); it stops by itself ` +
          `${s.idleSeconds} s after the last session or execution of task queue ${s.taskQueue} ends`,
      );
      return { kind: 'background', status: s, started: true };
    }
    if (Date.now() - started > READY_WITHIN_MS)
      throw new Error(`the background worker did not become ready within ${READY_WITHIN_MS / 1000} s; its log: ${log}`);
    await sleep(300);
  }
}

/** The background worker's status once it is ready; undefined when there is none (or it went away starting). */
async function untilReady(s: Settings, env: NodeJS.ProcessEnv): Promise<BackgroundStatus | undefined> {
  const until = Date.now() + READY_WITHIN_MS;
  for (;;) {
    const status = await askBackground(s, env);
    if (!status || status.state === 'stopping') return undefined;
    if (status.state === 'ready') return status;
    if (Date.now() > until) return undefined;
    await sleep(300);
  }
}

/** Starts a background worker: a detached process of its own (its own session: a terminal's Ctrl-C never reaches it). */
function startBackground(s: Settings, env: NodeJS.ProcessEnv): { log: string; pid: number | undefined } {
  const f = files(s, env);
  mkdirSync(f.dir, { recursive: true });
  const fd = openSync(f.log, 'a');
  try {
    const child = spawn(
      process.execPath,
      [path.join(PROJECT_ROOT, 'bin', 'durable-sandbox.js'), 'worker', '--background'],
      {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: { ...env, DS_TASK_QUEUE: s.taskQueue },
        cwd: PROJECT_ROOT,
      },
    );
    child.unref();
    return { log: f.log, pid: child.pid };
  } finally {
    closeSync(fd);
  }
}

/** The lock (and status line) of a background worker: undefined when another process holds it. */
async function holdLock(socket: string, status: () => BackgroundStatus): Promise<net.Server | undefined> {
  const server = net.createServer((conn) => conn.end(JSON.stringify(status())));
  const listened = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(socket, () => resolve(true));
  });
  if (listened) return server;
  // A socket file (not Linux) whose process is gone is stale: taken over.
  if (!socket.startsWith('\0') && existsSync(socket) && !(await answers(socket))) {
    rmSync(socket, { force: true });
    return holdLock(socket, status);
  }
  return undefined;
}

function answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(socket, () => {
      c.destroy();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });
}

/**
 * The background worker's own process (`durable-sandbox worker --background`): takes the lock or leaves at once,
 * serves the task queue, and stops once nothing of its queue has been open for its idle time. Returns the exit code.
 */
export async function runBackgroundWorker(env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { loadConfig } = await import('../worker/config');
  const config = loadConfig(env);
  const settings: Settings = { ...config.temporal, taskQueue: config.temporal.taskQueue };
  const f = files(settings, env);
  const idleSeconds = Number(env.DS_BACKGROUND_IDLE_SECONDS || DEFAULT_IDLE_SECONDS);
  if (!Number.isInteger(idleSeconds) || idleSeconds < 1)
    throw new Error(`DS_BACKGROUND_IDLE_SECONDS=${env.DS_BACKGROUND_IDLE_SECONDS}: a whole number of seconds ≥ 1`);
  const say = (line: string) =>
    process.stdout.write(`${new Date().toISOString()} [background worker ${process.pid}] ${line}\n`);
  const status: BackgroundStatus = {
    pid: process.pid,
    state: 'starting',
    taskQueue: settings.taskQueue,
    address: settings.address,
    namespace: settings.namespace,
    log: f.log,
    startedAt: new Date().toISOString(),
    idleSeconds,
  };
  let lock = await holdLock(f.socket, () => status);
  if (!lock) {
    const other = await askBackground(settings, env);
    say(`another background worker serves task queue ${settings.taskQueue} (pid ${other?.pid ?? '?'}): leaving`);
    return 0;
  }
  mkdirSync(f.dir, { recursive: true });
  writeFileSync(f.note, JSON.stringify(status, null, 2));
  const { DefaultLogger, Runtime } = await import('@temporalio/worker');
  try {
    Runtime.install({ logger: new DefaultLogger('WARN'), shutdownSignals: [] });
  } catch {
    // installed already
  }
  const { startInProcessWorker } = await import('../worker/in-process');
  say(`starting for task queue ${settings.taskQueue} on ${settings.address} (namespace ${settings.namespace})`);
  const worker = await startInProcessWorker(
    { ...env, DS_WARM_POOL_SIZE: '0', DS_WORKER_IDENTITY: workerIdentity('background') },
    { duties: { reconcilerSchedule: false, pools: false } },
  );
  status.state = 'ready';
  say(`ready; stops ${idleSeconds} s after the last session or execution of the queue ends`);
  let stopRequested = false;
  const onSignal = (sig: string) => {
    say(`${sig}: stopping`);
    stopRequested = true;
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => onSignal(sig));
  const query = `TaskQueue = '${settings.taskQueue}' AND ExecutionStatus = 'Running' AND WorkflowType IN ('executeCode', 'session')`;
  const openCount = async (): Promise<number | undefined> =>
    worker.temporal.workflow
      .count(query)
      .then((r) => r.count)
      .catch(() => undefined);
  let idleSince = Date.now();
  let unreachableSince: number | undefined;
  let releasedAt: number | undefined;
  while (!stopRequested) {
    await sleep(1000);
    const open = await openCount();
    const now = Date.now();
    if (open === undefined) {
      unreachableSince ??= now;
      // Temporal gone for good (the stack stopped): nothing left to serve.
      if (now - unreachableSince > 5 * 60_000) {
        say('Temporal unreachable for 5 min: stopping');
        break;
      }
      continue;
    }
    unreachableSince = undefined;
    if (open > 0) {
      idleSince = now;
      if (!lock) {
        // Work came while it was letting go: it stays (the lock again if nobody took it meanwhile).
        lock = await holdLock(f.socket, () => status);
        status.state = 'ready';
        releasedAt = undefined;
        say(`${open} open on the queue again: staying`);
      }
      continue;
    }
    if (lock && now - idleSince >= idleSeconds * 1000) {
      // No new command finds it from now on; one that found it a moment ago gets LINGER_MS to start its work.
      status.state = 'stopping';
      lock.close();
      lock = undefined;
      releasedAt = now;
      say(`nothing open on task queue ${settings.taskQueue} for ${idleSeconds} s: letting go`);
      continue;
    }
    if (!lock && releasedAt !== undefined && now - releasedAt >= LINGER_MS) break;
  }
  status.state = 'stopping';
  lock?.close();
  say('stopping the worker');
  await worker.stop();
  rmSync(f.note, { force: true });
  say('stopped');
  return 0;
}

/** The notes of this machine's background workers (for `stack:down` and for tests): pid and log of each. */
export function backgroundNotes(env: NodeJS.ProcessEnv = process.env): BackgroundStatus[] {
  const dir = stateDir(env);
  if (!existsSync(dir)) return [];
  const out: BackgroundStatus[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.json')) continue;
    try {
      out.push(JSON.parse(readFileSync(path.join(dir, name), 'utf8')) as BackgroundStatus);
    } catch {
      // half written: skip
    }
  }
  return out;
}

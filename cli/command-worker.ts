/**
 * A worker that lives as long as one command (`run`, `mcp`): started in the command's process when no worker serves
 * its task queue, and gone when the command ends, leaving nothing behind.
 *
 * - It sets up nothing that would outlive it: no reconciler Schedule, and a warm pool only when asked (emptied when
 *   it stops). `run` and `mcp` ask for none: `run` serves one execution (a pool would only take the node's CPU while
 *   that one sandbox starts), and an MCP client kills its server a few seconds after closing it, too soon to be sure
 *   a pool is gone. A worker of its own (`npm run worker`, the Deployment) keeps the warm pools.
 * - Its signals are the command's: Temporal's runtime does not stop it on SIGINT/SIGTERM, so that Ctrl-C can cancel
 *   the execution and this worker can carry the cancellation through.
 * - `finish` runs on every exit path: each execution the command started that is still open is cancelled (or, when
 *   its result is in, only awaited: it is cleaning up), its cleanup is awaited, and only then does the worker stop.
 */
import { DefaultLogger, Runtime } from '@temporalio/worker';
import type { InProcessWorker } from '../worker/in-process';
import { workerIdentity } from './background-worker';

export interface CommandWorkerOptions {
  env: Record<string, string | undefined>;
  taskQueue: string;
  /** Keep a warm pool while the command runs (emptied when it ends). */
  pools: boolean;
  /** The command's own lines (stderr). */
  say: (line: string) => void;
}

export interface OpenExecution {
  id: string;
  /** Its result is in: it is only cleaning up, and is awaited rather than cancelled. */
  resultIn?: boolean;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** How long `finish` waits for an execution's cleanup before it says so and leaves it to the next worker. */
const CLEANUP_WAIT_MS = 120_000;

export class CommandWorker {
  private starting: Promise<InProcessWorker> | undefined;

  constructor(private readonly options: CommandWorkerOptions) {}

  /** Whether the command runs a worker of its own (started, or starting). */
  get started(): boolean {
    return this.starting !== undefined;
  }

  /** Starts the worker (once; later calls get the same one). */
  start(): Promise<InProcessWorker> {
    this.starting ??= (async () => {
      const { env, taskQueue, pools, say } = this.options;
      say(
        `no worker serves task queue ${taskQueue}: running one in this process ` +
          '(it stops with this command, once what the command started is cleaned up)',
      );
      installQuietRuntime();
      const { startInProcessWorker } = await import('../worker/in-process');
      // Named as a command's own worker: a session never counts on it (cli/background-worker.ts).
      const named = { ...env, DS_WORKER_IDENTITY: workerIdentity('command') };
      return startInProcessWorker(pools ? named : { ...named, DS_WARM_POOL_SIZE: '0' }, {
        ephemeral: true,
        duties: { reconcilerSchedule: false, pools },
      });
    })();
    return this.starting;
  }

  /**
   * Leaves nothing behind: every execution in `open` that has not ended is cancelled (unless its result is in), its
   * cleanup awaited, and then the worker stops (emptying its pool). Nothing to do when the command runs no worker.
   */
  async finish(open: OpenExecution[]): Promise<void> {
    if (!this.starting) return;
    // A Ctrl-C now would kill the process with the cleanup half done: it is answered, not obeyed.
    const patience = (): void => this.options.say('cleaning up before exiting, so that nothing is left behind');
    for (const s of SIGNALS) process.on(s, patience);
    try {
      const worker = await this.starting.catch(() => undefined);
      if (!worker) return;
      await Promise.all(open.map((e) => this.settle(worker, e)));
      await worker.stop();
    } finally {
      for (const s of SIGNALS) process.off(s, patience);
    }
  }

  private async settle(worker: InProcessWorker, { id, resultIn }: OpenExecution): Promise<void> {
    const handle = worker.client.handle(id);
    const described = await handle.describe().catch(() => undefined);
    if (described?.status.name !== 'RUNNING') return;
    if (!resultIn) {
      this.options.say(`cancelling ${id}: this command's worker is the one running it, and it is about to stop`);
      await handle.cancel().catch(() => undefined);
    }
    if (!(await worker.client.closesWithin(id, CLEANUP_WAIT_MS)))
      this.options.say(
        `${id} is still cleaning up after ${CLEANUP_WAIT_MS / 1000} s; the next worker on task queue ` +
          `${this.options.taskQueue} finishes it (its sandbox also stops at its own deadline)`,
      );
  }
}

let runtimeInstalled = false;

/** Temporal's runtime with warnings only, and no signal handlers of its own (the command handles its signals). */
function installQuietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('WARN'), shutdownSignals: [] });
  } catch {
    // Already installed by whoever embeds the command: theirs stays.
  }
}

/**
 * A session from the caller's side: runs go to the session's workflow as Updates (run one at a time, in the order
 * received, whoever sends them), `close()` ends it and waits until its pods are gone. Any process can attach to a
 * session by its id (`SandboxClient.getSession`).
 */
import { randomUUID } from 'node:crypto';
import { WorkflowUpdateFailedError, WorkflowUpdateStage, type Client } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { STEP_FAILURES } from '../core/failures';
import {
  SESSION_HANDLERS,
  type ForkOptions,
  type SessionRunInput,
  type SessionRunResult,
  type SessionState,
} from '../core/session';
import type { MimeBundle } from '../core/types';
import { InvalidInputError } from '../core/validate';
import type { session as sessionWorkflow } from '../workflows/session';
import { NoWorkerError, SessionClosedError } from './errors';
import { SessionRunWatcher } from './watch';

/**
 * A run's options: its time limit and input files, an id that makes sending it again harmless, and callbacks that get
 * the run's output while it runs (each piece once, in order; the rest when the result is in).
 */
export type SessionRunOptions = Omit<SessionRunInput, 'code'> & {
  runId?: string;
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
  /** Each display (a figure, a table, a rich value) once, in order, as the run shows it. */
  onDisplay?: (bundle: MimeBundle, info: { index: number }) => void;
};

/** What a session asks of its SandboxClient: how long a run may wait to be taken up, and whether a worker serves. */
export interface SessionServed {
  /** The task queue the session's workflow runs on (named in errors). */
  taskQueue: string;
  /**
   * How long a run may wait for the session to take it up (ms; undefined: forever). Past it the session refuses the
   * run (its `acceptBy`), so a caller that stops waiting then knows for certain that it never runs.
   */
  acceptWithinMs?: number;
  /**
   * Rejects with NoWorkerError once no worker has served the session for `noWorkerSeconds`: none of its steps has
   * heartbeaten lately, and no worker polls the task queue (a fresh poll, or one that answers a ping).
   */
  whileUnserved(stop: AbortSignal, sessionId: string): Promise<never>;
}

/**
 * Sends an Update again while its session refuses it for moving to a new history (a moment: its runs in flight end,
 * then it continues as new); nothing ran, and the same update id reaches the new history.
 */
async function untilSettled<T>(send: () => Promise<T>): Promise<T> {
  for (let wait = 20; ; wait = Math.min(500, wait * 2)) {
    try {
      return await send();
    } catch (err) {
      if (!refusedWhileMoving(err)) throw err;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

function refusedWhileMoving(err: unknown): boolean {
  const cause = err instanceof WorkflowUpdateFailedError ? err.cause : undefined;
  return cause instanceof ApplicationFailure && cause.type === STEP_FAILURES.sessionMoving;
}

/** Beyond a run's acceptBy, how long the caller still waits for it to be taken up (clocks a little apart). */
const ACCEPT_MARGIN_MS = 5_000;

export class Session {
  constructor(
    private readonly temporal: Client,
    /** The session's id (its workflow's id). */
    readonly id: string,
    private readonly served?: SessionServed,
  ) {}

  private get handle() {
    return this.temporal.workflow.getHandle<typeof sessionWorkflow>(this.id);
  }

  /**
   * Runs code in the session: its variables, imports, working directory and files are those the earlier runs left.
   * `runId` makes the call idempotent: sent again with the same id (a retry after a lost answer), it gets the first
   * call's result and nothing runs twice.
   *
   * A run that no worker takes up in time (the client's `runAcceptSeconds`) throws NoWorkerError with `mayHaveRun:
   * false`: the session refuses it from then on, so it never runs. One taken up whose worker then goes away for
   * `noWorkerSeconds` throws NoWorkerError with `mayHaveRun: true`: it may have run or still run; sending it again
   * with the same `runId` gets its result without running it twice.
   */
  async run(code: string, options: SessionRunOptions = {}): Promise<SessionRunResult> {
    const { onStdout, onStderr, onDisplay, runId = `run-${randomUUID()}`, ...rest } = options;
    const live = onStdout || onStderr || onDisplay;
    const acceptWithinMs = this.served?.acceptWithinMs;
    const input: SessionRunInput = {
      code,
      ...rest,
      ...(acceptWithinMs !== undefined ? { acceptBy: Date.now() + acceptWithinMs } : {}),
    };
    const watch = live
      ? new SessionRunWatcher(this.handle, runId, {
          ...(onStdout ? { onStdout: (t: string) => onStdout(t) } : {}),
          ...(onStderr ? { onStderr: (t: string) => onStderr(t) } : {}),
          ...(onDisplay
            ? { onDisplay: (b: MimeBundle, i: { index: number }) => onDisplay(b, { index: i.index }) }
            : {}),
        })
      : undefined;
    const stop = new AbortController();
    let sent = 0;
    try {
      // A run refused by its validator (the session moving to a new history) is known once its result is asked
      // for: sent again, with the same id (nothing ran).
      const first = await this.takenUp(runId, input, acceptWithinMs);
      const running = this.typed(() =>
        untilSettled(async () => {
          const update = sent++ === 0 ? first : await this.takenUp(runId, input, acceptWithinMs);
          return update.result();
        }),
      );
      running.catch(() => undefined);
      const unserved = this.served?.whileUnserved(stop.signal, this.id).catch((err: unknown) => {
        throw err instanceof NoWorkerError ? this.mayHaveRun(runId, err) : err;
      });
      const result = await (unserved ? Promise.race([running, unserved]) : running);
      await watch?.finish(result);
      return result;
    } finally {
      stop.abort();
      await watch?.stop();
    }
  }

  /** Sends the run and waits until the session has taken it up (its Update accepted), or until it is too late. */
  private async takenUp(runId: string, input: SessionRunInput, acceptWithinMs: number | undefined) {
    const send = (signal?: AbortSignal) => {
      const start = () =>
        untilSettled(() =>
          this.handle.startUpdate<SessionRunResult, [SessionRunInput]>(SESSION_HANDLERS.run, {
            args: [input],
            updateId: runId,
            waitForStage: WorkflowUpdateStage.ACCEPTED,
          }),
        );
      return this.typed(() => (signal ? this.temporal.withAbortSignal(signal, start) : start()), runId);
    };
    if (acceptWithinMs === undefined) return send();
    const giveUp = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), acceptWithinMs + ACCEPT_MARGIN_MS);
    });
    const sent = send(giveUp.signal);
    sent.catch(() => undefined);
    try {
      const first = await Promise.race([sent, late]);
      if (first !== 'late') return first;
    } finally {
      clearTimeout(timer);
    }
    giveUp.abort();
    // The session refuses the run from now on (its acceptBy has passed): certain it never runs.
    throw this.notTakenUp(runId, `within ${Math.round((acceptWithinMs + ACCEPT_MARGIN_MS) / 1000)} s`);
  }

  private notTakenUp(runId: string, when: string): NoWorkerError {
    const queue = this.served?.taskQueue ?? 'its task queue';
    return new NoWorkerError(
      queue,
      `NoWorker: run ${runId} was not taken up by session ${this.id} (${when}): no worker serves task queue ${queue}. ` +
        `The session refuses it from now on, so nothing ran; send it again once a worker serves the queue ` +
        `(\`npm run worker\`, the Deployment in k8s/, or the CLI, which starts one)`,
      { sessionId: this.id, runId, mayHaveRun: false },
    );
  }

  private mayHaveRun(runId: string, cause: NoWorkerError): NoWorkerError {
    return new NoWorkerError(
      cause.taskQueue,
      `NoWorker: run ${runId} of session ${this.id} was taken up, and then no worker served task queue ${cause.taskQueue}: ` +
        `it may have run, or may still run when a worker comes back. Send it again with the same run id (${runId}) ` +
        `to get its result; it does not run twice`,
      { sessionId: this.id, runId, mayHaveRun: true },
    );
  }

  /**
   * New sessions whose state is this one's as of a run (`atRun`, default its last; 0: as it opened): its variables,
   * imports and files then, each fork its own pod, workspace and history from there on. This session goes on as it
   * was. A fork from an earlier run needs that run's snapshot (the newest DS_SESSION_SNAPSHOTS_KEPT are kept); without
   * one, the fork's state is rebuilt by running the earlier runs again, and its first run's `restored` says which.
   */
  async fork(options: ForkOptions = {}): Promise<Session[]> {
    const ids = await this.typed(() =>
      untilSettled(() =>
        this.handle.executeUpdate<string[], [ForkOptions]>(SESSION_HANDLERS.fork, { args: [options] }),
      ),
    );
    return ids.map((id) => new Session(this.temporal, id, this.served));
  }

  /** Where the session stands (open, closing, closed; its runs and current pod). */
  async state(): Promise<SessionState> {
    return this.handle.query<SessionState>(SESSION_HANDLERS.state);
  }

  /**
   * Ends the session now: a run in flight is stopped (its call fails), then its pods go; resolves with the final
   * state. With `wait: false` it resolves (undefined) once the session has the request: it ends on its own even if
   * this process exits right after. Use close() to let runs in flight finish first.
   */
  async cancel(options: { wait: false }): Promise<undefined>;
  async cancel(options?: { wait?: true }): Promise<SessionState>;
  async cancel(options: { wait?: boolean } = {}): Promise<SessionState | undefined> {
    await this.handle.cancel().catch(async (err: unknown) => {
      const { status } = await this.handle.describe();
      if (status.name !== 'COMPLETED') throw err;
    });
    return options.wait === false ? undefined : this.handle.result();
  }

  /**
   * Ends the session once its runs in flight are done, and waits until its pods are gone; closing a closed session
   * is a no-op. With `wait: false` it resolves (undefined) once the session has accepted the request, which it then
   * carries out on its own.
   */
  async close(options: { wait: false }): Promise<undefined>;
  async close(options?: { wait?: true }): Promise<SessionState>;
  async close(options: { wait?: boolean } = {}): Promise<SessionState | undefined> {
    try {
      if (options.wait === false) {
        await this.handle.startUpdate<SessionState, []>(SESSION_HANDLERS.close, {
          waitForStage: WorkflowUpdateStage.ACCEPTED,
        });
        return undefined;
      }
      return await this.handle.executeUpdate<SessionState, []>(SESSION_HANDLERS.close);
    } catch (err) {
      // Already over: its final state is its result.
      const { status } = await this.handle.describe();
      if (status.name === 'COMPLETED') return options.wait === false ? undefined : await this.handle.result();
      throw err;
    }
  }

  private async typed<T>(call: () => Promise<T>, runId?: string): Promise<T> {
    try {
      return await call();
    } catch (err) {
      const cause = err instanceof WorkflowUpdateFailedError ? err.cause : undefined;
      // The session was cancelled (cancel()) while this run was in it: the run was stopped with it.
      if (
        cause instanceof CancelledFailure ||
        (cause instanceof ActivityFailure && cause.cause instanceof CancelledFailure)
      )
        throw new SessionClosedError(
          this.id,
          `session ${this.id} was cancelled while the run was in it; the run was stopped`,
        );
      if (cause instanceof ApplicationFailure) {
        if (cause.type === STEP_FAILURES.sessionClosed) throw new SessionClosedError(this.id, cause.message);
        // It reached the session after this caller's acceptBy: refused, never run.
        if (cause.type === STEP_FAILURES.runExpired && runId) throw this.notTakenUp(runId, cause.message);
        if (cause.type === STEP_FAILURES.invalidInput) {
          const d = (cause.details?.[0] ?? {}) as { field?: string; limit?: string };
          throw new InvalidInputError(d.field ?? 'input', d.limit ?? 'valid', cause.message.replace(/^[^:]*: /, ''));
        }
      }
      // A run into a session that has completed (closed, expired) is refused by Temporal itself.
      const { status } = await this.handle.describe().catch((e: unknown) => ({
        status: { name: e instanceof Error && e.name === 'WorkflowNotFoundError' ? 'NONE' : 'UNKNOWN' },
      }));
      if (status.name === 'NONE') throw new SessionClosedError(this.id, `there is no session ${this.id}`);
      if (status.name !== 'RUNNING') {
        // Its final state says why (a session refused for the cap on open sessions says which).
        const final = await this.handle.result().catch(() => undefined);
        throw new SessionClosedError(this.id, final?.refused ?? `session ${this.id} is closed`);
      }
      throw err;
    }
  }
}

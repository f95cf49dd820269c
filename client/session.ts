/**
 * A session from the caller's side: runs go to the session's workflow as Updates (run one at a time, in the order
 * received, whoever sends them), `close()` ends it and waits until its pods are gone. Any process can attach to a
 * session by its id (`SandboxClient.getSession`).
 */
import { randomUUID } from 'node:crypto';
import { WorkflowUpdateFailedError, WorkflowUpdateStage, type Client } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { STEP_FAILURES } from '../core/failures';
import { SESSION_HANDLERS, type SessionRunInput, type SessionRunResult, type SessionState } from '../core/session';
import { InvalidInputError } from '../core/validate';
import type { session as sessionWorkflow } from '../workflows/session';
import { SessionClosedError } from './errors';
import { SessionRunWatcher } from './watch';

/**
 * A run's options: its time limit and input files, an id that makes sending it again harmless, and callbacks that get
 * the run's output while it runs (each piece once, in order; the rest when the result is in).
 */
export type SessionRunOptions = Omit<SessionRunInput, 'code'> & {
  runId?: string;
  onStdout?: (text: string) => void;
  onStderr?: (text: string) => void;
};

/** What a session asks of its SandboxClient: whether any worker serves its task queue. */
export interface SessionServed {
  /** Rejects with NoWorkerError when no worker has polled the task queue for `noWorkerSeconds`. */
  whileUnserved(stop: AbortSignal): Promise<never>;
}

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
   */
  async run(code: string, options: SessionRunOptions = {}): Promise<SessionRunResult> {
    const { onStdout, onStderr, ...withId } = options;
    const live = onStdout || onStderr;
    // Live output is followed by the run's id: one is made when the caller gives none.
    const { runId = live ? `run-${randomUUID()}` : undefined, ...rest } = withId;
    const watch = live
      ? new SessionRunWatcher(this.handle, runId!, {
          ...(onStdout ? { onStdout: (t: string) => onStdout(t) } : {}),
          ...(onStderr ? { onStderr: (t: string) => onStderr(t) } : {}),
        })
      : undefined;
    const running = this.typed(() =>
      this.handle.executeUpdate<SessionRunResult, [SessionRunInput]>(SESSION_HANDLERS.run, {
        args: [{ code, ...rest }],
        ...(runId !== undefined ? { updateId: runId } : {}),
      }),
    );
    const stop = new AbortController();
    running.catch(() => undefined);
    try {
      const result = await (this.served ? Promise.race([running, this.served.whileUnserved(stop.signal)]) : running);
      await watch?.finish(result);
      return result;
    } finally {
      stop.abort();
      await watch?.stop();
    }
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

  private async typed<T>(call: () => Promise<T>): Promise<T> {
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

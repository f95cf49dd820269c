/** The client's own errors: typed, each naming what it was about. */

/** The caller stopped waiting (its AbortSignal, or `waitTimeoutMs`). The execution goes on; attach again with its id. */
export class ExecutionWaitAbortedError extends Error {
  override readonly name = 'ExecutionWaitAbortedError';
  constructor(
    readonly executionId: string,
    /** Where the execution stood when the caller stopped waiting. */
    readonly state: 'queued' | 'running' | 'cleaning_up' | 'completed' | 'unknown',
    readonly why: 'aborted' | 'timeout',
  ) {
    super(
      `stopped waiting for execution ${executionId} (${why === 'timeout' ? 'wait timeout' : 'aborted'}); it is ${state}, and goes on: attach again with its id`,
    );
  }
}

/** A run sent to a session that is closing or closed (closed by a caller, or past its lifetime). */
export class SessionClosedError extends Error {
  override readonly name = 'SessionClosedError';
  constructor(
    readonly sessionId: string,
    message: string,
  ) {
    super(message);
  }
}

/** Opening one more session would pass the cap on open sessions of the task queue (`maxOpenSessions`). */
export class SessionLimitError extends Error {
  override readonly name = 'SessionLimitError';
  readonly reason = 'SessionLimit';
  constructor(
    readonly taskQueue: string,
    readonly open: number,
    readonly limit: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * No worker serves the task queue: the message says how to start one, and whether anything may have run.
 * - openSession, before anything is started (no `runId`; nothing ran).
 * - A session run that no worker took up within the client's `runAcceptSeconds`: `mayHaveRun: false`. The session
 *   refuses it from then on (its `acceptBy` passed), so it never runs.
 * - A session run that was taken up, after which no worker polled for `noWorkerSeconds`: `mayHaveRun: true`. It may
 *   have run or may still run once a worker comes back; sending it again with the same `runId` gets its result and
 *   does not run it twice.
 */
export class NoWorkerError extends Error {
  override readonly name = 'NoWorkerError';
  readonly reason = 'NoWorker';
  readonly sessionId?: string;
  readonly runId?: string;
  /** Whether the code may have run (or may still run): false when it is certain that it never runs. */
  readonly mayHaveRun: boolean;
  constructor(
    readonly taskQueue: string,
    message: string,
    about: { sessionId?: string; runId?: string; mayHaveRun?: boolean } = {},
  ) {
    super(message);
    if (about.sessionId !== undefined) this.sessionId = about.sessionId;
    if (about.runId !== undefined) this.runId = about.runId;
    this.mayHaveRun = about.mayHaveRun ?? false;
  }
}

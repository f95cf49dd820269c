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
 * No worker polls the session's task queue: the message says how to start one. Raised by openSession before anything
 * is started, and by a run that no worker took up within the client's `noWorkerSeconds` (that run stays queued in the
 * session and runs if a worker comes back before the session's lifetime ends; its result goes to nobody).
 */
export class NoWorkerError extends Error {
  override readonly name = 'NoWorkerError';
  readonly reason = 'NoWorker';
  constructor(
    readonly taskQueue: string,
    message: string,
  ) {
    super(message);
  }
}

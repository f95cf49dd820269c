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

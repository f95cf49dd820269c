/**
 * How the CLI's process ends. `run` exits with the program's own exit code when it exited by itself; the other
 * outcomes have codes of their own (a program may of course exit with one of these numbers itself: --json says which).
 */
export const EXIT = {
  ok: 0,
  /** Bad command line. */
  usage: 64,
  /** The input broke a limit (InvalidInputError). */
  invalidInput: 65,
  /** No such session, or it is closed (session run, state, close). */
  noSession: 66,
  /** Temporal (or the local stack) could not be reached; or no worker serves the task queue (session). */
  unavailable: 69,
  /** infra_error: the infrastructure failed, not the program; sandbox_lost: a session's pod was lost under the run. */
  infraError: 70,
  /** The caller stopped waiting (--wait); the execution goes on. */
  stoppedWaiting: 75,
  /** timed_out, as `timeout(1)` does. */
  timedOut: 124,
  /** cancelled (Ctrl-C). */
  cancelled: 130,
  /** oom_killed, as a SIGKILLed process. */
  oomKilled: 137,
} as const;

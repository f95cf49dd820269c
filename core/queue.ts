/**
 * An execution no worker started: everything about it in one place. Temporal cannot time out a workflow that waits
 * for its first worker without also limiting how long it may run, so two parties end such an execution, with the
 * same words and the same result: the workflow itself, when a worker finally starts it past the queue timeout, and a
 * waiting client, which terminates it when the queue timeout passes or when no worker polls the task queue at all.
 * The client writes why into the termination's reason (`unservedReason`); any client reads it back into the same
 * result (`readUnserved`, `unservedResult`). Pure; runs in the workflow and in the client.
 */
import type { ExecutionPolicy } from './policy';
import { buildResult } from './result';
import { DEADLINE_GRACE_MS } from './watch';
import type { ExecutionResult, InfraError, Language } from './types';

/** Why nobody ran it: the queue timeout passed, or no worker polls its task queue. */
export type Unserved = (
  | {
      kind: 'queueTimeout';
      limitSeconds: number;
      /** The server ended it at its bound (unservedBoundSeconds), not a waiting client at the queue timeout. */
      onServer?: boolean;
    }
  | { kind: 'noWorker'; taskQueue: string; waitedSeconds: number }
) & {
  /** A worker took it up at the very moment it was ended: its program may have started. */
  takenUp?: boolean;
};

/** The first word of the termination reason a client writes for each (also the result's error reason). */
export const UNSERVED_REASONS = { queueTimeout: 'QueueTimeout', noWorker: 'NoWorker' } as const;

/** The queue timeout has passed for an execution started at `startedAt` that no worker has started. */
export function queueTimedOut(policy: Pick<ExecutionPolicy, 'queueTimeoutSeconds'>, startedAt: number, now: number) {
  return policy.queueTimeoutSeconds > 0 && now - startedAt > policy.queueTimeoutSeconds * 1000;
}

/**
 * How long an execution may stay open on the server, from its start: the server ends it there (the workflow
 * execution timeout) whether or not anybody waits for it, so one that no worker ever takes up does not stay Running
 * for good. Long enough never to cut one that runs: the queue timeout, every attempt at its full length (the program's
 * time limit, the startup allowance and the run step's own grace), and five times the startup allowance for the
 * last cleanup (10 minutes by default: a cleanup cut there leaves its objects to the reconciler). Undefined (no
 * bound) when the queue timeout is 0: the policy then says to wait for a worker forever.
 */
export function unservedBoundSeconds(
  policy: Pick<ExecutionPolicy, 'queueTimeoutSeconds' | 'maxInfraAttempts' | 'startupAllowanceSeconds'>,
  timeoutSeconds: number,
): number | undefined {
  if (!(policy.queueTimeoutSeconds > 0)) return undefined;
  const attempt = timeoutSeconds + policy.startupAllowanceSeconds + DEADLINE_GRACE_MS / 1000;
  return (
    policy.queueTimeoutSeconds + policy.maxInfraAttempts * attempt + CLEANUP_ALLOWANCES * policy.startupAllowanceSeconds
  );
}

/** How many startup allowances the bound leaves for the last cleanup. */
const CLEANUP_ALLOWANCES = 5;

/** The termination reason a client writes (readable in the Temporal UI; `readUnserved` reads it back). */
export function unservedReason(u: Unserved): string {
  return u.kind === 'noWorker'
    ? `${UNSERVED_REASONS.noWorker}: no worker polls task queue ${u.taskQueue} (waited ${u.waitedSeconds} s)`
    : `${UNSERVED_REASONS.queueTimeout}: no worker started it within ${u.limitSeconds} s`;
}

/** What a termination reason says, when a client wrote it for an execution nobody ran; undefined for any other. */
export function readUnserved(reason: string): Unserved | undefined {
  const noWorker = /^NoWorker: no worker polls task queue (\S+) \(waited (\d+) s\)$/.exec(reason);
  if (noWorker) return { kind: 'noWorker', taskQueue: noWorker[1], waitedSeconds: Number(noWorker[2]) };
  const timeout = /^QueueTimeout: no worker started it within (\d+) s$/.exec(reason);
  if (timeout) return { kind: 'queueTimeout', limitSeconds: Number(timeout[1]) };
  return undefined;
}

export function unservedError(u: Unserved): InfraError {
  // Nothing ran, unless a worker took it up just as it was ended.
  const ran = u.takenUp
    ? 'a worker took it up just as it was ended, so its program may have started; anything it made is removed by the reconciler'
    : 'nothing ran';
  if (u.kind === 'noWorker')
    return {
      reason: UNSERVED_REASONS.noWorker,
      message:
        `no worker polls task queue ${u.taskQueue} (waited ${u.waitedSeconds} s); start one (\`npm run worker\`, or the ` +
        `Deployment in k8s/), or use \`durable-sandbox run\` / \`durable-sandbox mcp\`, which run one themselves; ${ran}`,
      retryable: false,
    };
  return {
    reason: UNSERVED_REASONS.queueTimeout,
    message: u.onServer
      ? `no worker took this execution up before the server ended it at its bound of ${u.limitSeconds} s (its queue timeout, DS_QUEUE_TIMEOUT_SECONDS, and the longest it could run); ${ran}`
      : `no worker started this execution within ${u.limitSeconds} s (DS_QUEUE_TIMEOUT_SECONDS); ${ran}`,
    retryable: false,
  };
}

/** The result of an execution nobody ran: nothing was created, nothing ran. */
export function unservedResult(
  u: Unserved,
  args: { executionId: string; language: Language; startedAt: number; namespace: string; image: string },
): ExecutionResult {
  const error = unservedError(u);
  return buildResult({
    executionId: args.executionId,
    language: args.language,
    end: { kind: 'infra', error },
    output: undefined,
    attempts: 0,
    attemptErrors: [error],
    kubernetes: { namespace: args.namespace, image: args.image },
    timeline: [{ phase: 'started', at: args.startedAt, attempt: 1 }],
  });
}

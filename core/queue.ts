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
import type { ExecutionResult, InfraError, Language } from './types';

/** Why nobody ran it: the queue timeout passed, or no worker polls its task queue. */
export type Unserved =
  { kind: 'queueTimeout'; limitSeconds: number } | { kind: 'noWorker'; taskQueue: string; waitedSeconds: number };

/** The first word of the termination reason a client writes for each (also the result's error reason). */
export const UNSERVED_REASONS = { queueTimeout: 'QueueTimeout', noWorker: 'NoWorker' } as const;

/** The queue timeout has passed for an execution started at `startedAt` that no worker has started. */
export function queueTimedOut(policy: Pick<ExecutionPolicy, 'queueTimeoutSeconds'>, startedAt: number, now: number) {
  return policy.queueTimeoutSeconds > 0 && now - startedAt > policy.queueTimeoutSeconds * 1000;
}

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
  if (u.kind === 'noWorker')
    return {
      reason: UNSERVED_REASONS.noWorker,
      message:
        `no worker polls task queue ${u.taskQueue} (waited ${u.waitedSeconds} s); start one (\`npm run worker\`, or the ` +
        `Deployment in k8s/), or use \`durable-sandbox run\` / \`durable-sandbox mcp\`, which run one themselves; nothing ran`,
      retryable: false,
    };
  return {
    reason: UNSERVED_REASONS.queueTimeout,
    message: `no worker started this execution within ${u.limitSeconds} s (DS_QUEUE_TIMEOUT_SECONDS); nothing ran`,
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

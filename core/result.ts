/** Assembles the typed result of an execution from how its last attempt ended. Pure; runs inside the workflow. */
import type { AttemptEnd, CollectedOutput } from './attempt';
import type { SandboxKind } from './sandbox';
import type {
  ExecutionResult,
  ExecutionStatus,
  InfraError,
  KubernetesRefs,
  Language,
  PhaseEvent,
  StreamOutput,
} from './types';

const EMPTY: StreamOutput = { text: '', totalBytes: 0, capturedBytes: 0, truncated: false };

export function statusOf(
  end: AttemptEnd,
  output: CollectedOutput | undefined,
): { status: ExecutionStatus; exitCode: number | null } {
  switch (end.kind) {
    case 'cancelled':
      return { status: 'cancelled', exitCode: null };
    case 'infra':
      return { status: 'infra_error', exitCode: null };
    case 'deadline':
      return { status: 'timed_out', exitCode: null };
    case 'finished':
      if (output?.trailer?.timedOut) return { status: 'timed_out', exitCode: null };
      if (end.oomKilled) return { status: 'oom_killed', exitCode: null };
      return { status: end.exitCode === 0 ? 'succeeded' : 'failed', exitCode: end.exitCode };
  }
}

export function buildResult(args: {
  executionId: string;
  language: Language;
  end: AttemptEnd;
  output: CollectedOutput | undefined;
  attempts: number;
  attemptErrors: InfraError[];
  kubernetes: KubernetesRefs;
  timeline: PhaseEvent[];
  sandbox?: SandboxKind;
}): ExecutionResult {
  const { status, exitCode } = statusOf(args.end, args.output);
  const stdout = args.output?.stdout ?? EMPTY;
  const stderr = args.output?.stderr ?? EMPTY;
  const info = ({ text: _text, ...rest }: StreamOutput) => rest;
  const t = args.output?.trailer;
  return {
    executionId: args.executionId,
    status,
    exitCode,
    stdout: stdout.text,
    stderr: stderr.text,
    stdoutInfo: info(stdout),
    stderrInfo: info(stderr),
    outputFiles: args.output?.outputFiles ?? [],
    ...(args.end.kind === 'infra' ? { error: args.end.error } : {}),
    attempts: args.attempts,
    attemptErrors: args.attemptErrors,
    language: args.language,
    sandbox: args.sandbox ?? 'cold',
    kubernetes: args.kubernetes,
    timeline: args.timeline,
    ...(t && t.finishedAt >= t.startedAt && t.startedAt > 0 ? { durationMs: t.finishedAt - t.startedAt } : {}),
  };
}

/** Why an execution that no worker started in time ended: the same words from the workflow and the client. */
export function queueTimeoutError(limitSeconds: number): InfraError {
  return {
    reason: 'QueueTimeout',
    message: `no worker started this execution within ${limitSeconds} s (DS_QUEUE_TIMEOUT_SECONDS); nothing ran`,
    retryable: false,
  };
}

/** Why an execution ended that nobody could serve: no worker polled its task queue, and the caller would not wait. */
export function noWorkerError(taskQueue: string, waitedSeconds: number): InfraError {
  return {
    reason: 'NoWorker',
    message:
      `no worker polls task queue ${taskQueue} (waited ${waitedSeconds} s); start one (\`npm run worker\`, or the ` +
      `Deployment in k8s/), or use \`durable-sandbox run\` / \`durable-sandbox mcp\`, which run one themselves; nothing ran`,
    retryable: false,
  };
}

/** The prefix of the termination reason a client writes when it ends an execution nobody served in time. */
export const QUEUE_TIMEOUT_TERMINATION = 'QueueTimeout';
/** The prefix of the termination reason a client writes when it ends an execution no worker could serve at all. */
export const NO_WORKER_TERMINATION = 'NoWorker';

/** The result of an execution that no worker started (in time, or at all): nothing was created, nothing ran. */
export function queueTimeoutResult(args: {
  executionId: string;
  language: Language;
  limitSeconds: number;
  startedAt: number;
  namespace: string;
  image: string;
  /** Ended because no worker polled (NoWorker) rather than by the queue timeout. */
  noWorker?: { taskQueue: string; waitedSeconds: number };
}): ExecutionResult {
  const error = args.noWorker
    ? noWorkerError(args.noWorker.taskQueue, args.noWorker.waitedSeconds)
    : queueTimeoutError(args.limitSeconds);
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

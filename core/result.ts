/** Assembles the typed result of an execution from how its last attempt ended. Pure; runs inside the workflow. */
import type { NetworkReport } from './egress';
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
      return { status: end.error.reason === 'SandboxLost' ? 'sandbox_lost' : 'infra_error', exitCode: null };
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
  network?: NetworkReport;
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
    ...(args.network ? { network: args.network } : {}),
    ...(args.output?.displays
      ? {
          displays: args.output.displays,
          displaysInfo: {
            total: args.output.displaysTotal ?? args.output.displays.length,
            dropped: Math.max(0, (args.output.displaysTotal ?? 0) - args.output.displays.length),
          },
        }
      : {}),
  };
}

/** What the workflow hands each activity of one attempt, and what the steps report back. */
import type { PodProgress } from './classify';
import type { NetworkReport } from './egress';
import type { SandboxKind } from './sandbox';
import type { ExecutionPolicy } from './policy';
import type { InfraError, LiveOutput, MimeBundle, OutputFile, StreamOutput } from './types';
import type { ExecutionRequest } from './validate';

export interface AttemptSpec {
  executionId: string;
  attempt: number;
  request: ExecutionRequest;
  policy: ExecutionPolicy;
}

/** Which attempt's objects a step works on. */
export interface AttemptRef {
  executionId: string;
  attempt: number;
  namespace: string;
  /**
   * What the run step reported it ran in, when it reported: a warm attempt has no Job or ConfigMap to delete.
   * Unknown (a run step that failed or was cancelled): everything an attempt can be made of is deleted.
   */
  sandbox?: SandboxKind;
}

export interface Created {
  name: string;
  /** True when a retried create found the object an earlier try had made. */
  adopted: boolean;
  at: number;
}

/** How an attempt ended, as far as Kubernetes can tell. */
export type AttemptEnd =
  | { kind: 'finished'; exitCode: number; reason: string; oomKilled: boolean }
  | { kind: 'deadline' }
  | { kind: 'infra'; error: InfraError }
  | { kind: 'cancelled' };

export interface AwaitResult {
  end: Exclude<AttemptEnd, { kind: 'cancelled' }>;
  progress: PodProgress;
}

/** What the run step reports in its heartbeats: where the attempt stands and the output so far. */
export interface RunHeartbeat {
  /** The execution's attempt (a new one starts its output from the beginning). */
  attempt: number;
  progress: PodProgress;
  /**
   * When the attempt got its sandbox: its Job created (cold) or its pool pod claimed (warm). Set once it has one,
   * so a resumed step never creates a second Job or claims a second pod.
   */
  acquiredAt?: number;
  sandbox?: SandboxKind;
  output?: LiveOutput;
}

/** What the run step returns: how the attempt ended and everything the program wrote, capped. */
export interface RunResult extends AwaitResult {
  output: CollectedOutput;
  /** With egress: what the program reached and was refused, from the gateway. */
  network?: NetworkReport;
  /** When the attempt got its sandbox; undefined only when the step never got that far. */
  acquiredAt?: number;
  sandbox: SandboxKind;
}

export interface CollectedOutput {
  /** False when the pod or its log was already gone. */
  available: boolean;
  stdout: StreamOutput;
  stderr: StreamOutput;
  /** Absent in results recorded before output files existed. */
  outputFiles?: OutputFile[];
  /** Display data (absent when the program displayed nothing), and how many displays it made in all. */
  displays?: MimeBundle[];
  displaysTotal?: number;
  trailer: {
    exitCode: number;
    timedOut: boolean;
    terminated: boolean;
    startedAt: number;
    finishedAt: number;
    error: string | null;
  } | null;
  at: number;
}

export interface CleanupResult {
  jobDeleted: boolean;
  configMapDeleted: boolean;
  podsRemaining: number;
  at: number;
}

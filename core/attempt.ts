/** What the workflow hands each activity of one attempt, and what the steps report back. */
import type { PodProgress } from './classify';
import type { ExecutionPolicy } from './policy';
import type { InfraError, StreamOutput } from './types';
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

export interface CollectedOutput {
  /** False when the pod or its log was already gone. */
  available: boolean;
  stdout: StreamOutput;
  stderr: StreamOutput;
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

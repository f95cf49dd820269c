/** What one benchmarked execution records, for either side. */
import type { SandboxKind } from '../../core/sandbox';
import { PHASES, type PhaseName } from '../../core/types';

/**
 * floor: the plain direct client; fast: the fastest direct client (scripts/bench/fast-floor.ts); ours: executeCode
 * on a cold sandbox (no pool); warm: executeCode with a warm pool.
 */
export type Side = 'floor' | 'fast' | 'ours' | 'warm';

export const SIDES: Side[] = ['floor', 'fast', 'ours', 'warm'];

export { PHASES };

export interface RunRecord {
  side: Side;
  workload: string;
  executionId: string;
  /** Name of the Job and ConfigMap (attempt 1). */
  resourceName: string;
  ok: boolean;
  status: string;
  exitCode: number | null;
  error?: string;
  attempts: number;
  /** Ours: where the program ran. */
  sandbox?: SandboxKind;
  /** Ours: the pod it ran in (a warm run's pool pod has a generated name: its requests are found by it). */
  pod?: string;
  /** Client clock: call made, and result in hand (floor: pod gone). */
  t0: number;
  t1: number;
  latencyMs: number;
  /** Phase times (ms since the epoch), the same definitions on both sides. */
  phases: Partial<Record<PhaseName, number>>;
  /** The program's run time by the launcher's clock in the sandbox (the trailer's finishedAt − startedAt). */
  durationMs?: number;
  stdoutTotalBytes: number;
  stdoutCapturedBytes: number;
  /** This process's CPU during the run (only meaningful when runs do not overlap). */
  cpuUserMs: number;
  cpuSystemMs: number;
}

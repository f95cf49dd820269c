/** The project's metric names and the pure logic behind their values (the SDK's own metrics are `temporal_*`). */
import type { PhaseEvent, PhaseName } from './types';

export const METRICS = {
  executions: 'durable_sandbox_executions',
  attempts: 'durable_sandbox_attempts',
  infraErrors: 'durable_sandbox_infra_errors',
  phaseSeconds: 'durable_sandbox_phase_seconds',
  reconcilerDeletions: 'durable_sandbox_reconciler_deletions',
  poolPods: 'durable_sandbox_pool_pods',
  poolCreated: 'durable_sandbox_pool_pods_created',
  poolDeleted: 'durable_sandbox_pool_pods_deleted',
} as const;

/** What the worker counts of its sandboxes' egress, from the gateway's records (the gateway has its own too). */
export const EGRESS_METRICS = {
  connections: {
    name: 'durable_sandbox_egress_connections',
    help: "sandboxes' connections through the egress gateway, by outcome (allowed, refused)",
  },
  bytes: { name: 'durable_sandbox_egress_bytes', help: 'bytes sandboxes moved through the egress gateway' },
} as const;

/** The phases measured, each from one timeline mark to the next that exists (a warm attempt has `claimed`). */
const PHASES: { phase: string; from: PhaseName[]; to: PhaseName[] }[] = [
  { phase: 'acquire', from: ['started'], to: ['jobCreated', 'claimed'] },
  { phase: 'start', from: ['jobCreated', 'claimed'], to: ['containerStarted'] },
  { phase: 'run', from: ['containerStarted'], to: ['containerFinished'] },
  { phase: 'collect', from: ['containerFinished'], to: ['outputCollected'] },
  { phase: 'cleanup', from: ['outputCollected'], to: ['cleanedUp'] },
];

/** Durations of the last attempt's phases, in seconds (an attempt that never got that far has none). */
export function phaseDurations(timeline: readonly PhaseEvent[]): { phase: string; seconds: number }[] {
  const last = Math.max(1, ...timeline.map((e) => e.attempt));
  const at = (names: PhaseName[]) =>
    timeline.find((e) => names.includes(e.phase) && (e.attempt === last || e.phase === 'started'))?.at;
  const out: { phase: string; seconds: number }[] = [];
  for (const p of PHASES) {
    const from = at(p.from);
    const to = at(p.to);
    if (from !== undefined && to !== undefined && to >= from) out.push({ phase: p.phase, seconds: (to - from) / 1000 });
  }
  return out;
}

/** The reconciler's reason for a deletion, as a metric label. */
export function reconcileReason(why: string): 'too_old' | 'owner_closed' | 'owner_missing' | 'other' {
  if (why.startsWith('older than')) return 'too_old';
  if (why === 'owner closed') return 'owner_closed';
  if (why === 'owner unknown to Temporal') return 'owner_missing';
  return 'other';
}

/**
 * Deterministic names and labels of an execution's Kubernetes objects. The same execution id and attempt always
 * give the same names, so a retried create finds (and adopts) what an earlier try made instead of making another.
 */

export const MANAGED_BY = 'durable-sandbox';
export const LABELS = {
  managedBy: 'app.kubernetes.io/managed-by',
  execution: 'durable-sandbox.dev/execution',
  attempt: 'durable-sandbox.dev/attempt',
  /** Warm pool pods: which pool, ready or claimed, and the template they were made from. */
  pool: 'durable-sandbox.dev/pool',
  poolState: 'durable-sandbox.dev/pool-state',
  template: 'durable-sandbox.dev/template',
  /** Session pods: which session (a hash of its id), and which of its pods (the generation, from 1). */
  session: 'durable-sandbox.dev/session',
  sessionGeneration: 'durable-sandbox.dev/session-generation',
  /** The namespace's launcher ConfigMap (one per launcher version, shared by every cold sandbox; never an attempt's). */
  launcher: 'durable-sandbox.dev/launcher',
} as const;
export const ANNOTATIONS = {
  executionId: 'durable-sandbox.dev/execution-id',
  language: 'durable-sandbox.dev/language',
  /** Warm pool pods: the pool workflow that keeps them (the reconciler's owner until a claim). */
  poolOwner: 'durable-sandbox.dev/pool-owner',
  /** Session pods: the session's id (its workflow's id; the reconciler's owner). */
  sessionId: 'durable-sandbox.dev/session-id',
  /**
   * Session pods whose launcher takes each run once ("true"): a run handed to it again (its number already accepted)
   * is not run again, so a retried run step may hand over a run its dead predecessor may or may not have written.
   */
  runsOnce: 'durable-sandbox.dev/runs-once',
} as const;

/** 64-bit FNV-1a as 16 hex digits (two 32-bit halves with different offsets; no Node crypto in workflows). */
export function hash16(s: string): string {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c ^ (i & 0xff), 0x01000193) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}

function slug(s: string, max: number): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, max)
    .replace(/-$/, '');
}

export interface ResourceNames {
  /** Name of both the Job and its ConfigMap (different kinds may share a name). */
  name: string;
  /** Label value that identifies the execution (the id itself may not be a valid label value). */
  executionLabel: string;
  /** Selects every object of this attempt. */
  attemptSelector: string;
  /** Selects every object of this execution, all attempts. */
  executionSelector: string;
}

/** Names for one attempt of one execution: `ds-<slug>-<hash>-<attempt>`, a DNS-1123 label of at most 63 chars. */
export function resourceNames(executionId: string, attempt: number): ResourceNames {
  if (!Number.isInteger(attempt) || attempt < 1 || attempt > 999) throw new RangeError(`bad attempt ${attempt}`);
  const executionLabel = hash16(executionId);
  const s = slug(executionId, 32);
  const name = `ds-${s ? `${s}-` : ''}${executionLabel.slice(0, 10)}-${attempt}`;
  const executionSelector = `${LABELS.managedBy}=${MANAGED_BY},${LABELS.execution}=${executionLabel}`;
  return {
    name,
    executionLabel,
    executionSelector,
    attemptSelector: `${executionSelector},${LABELS.attempt}=${attempt}`,
  };
}

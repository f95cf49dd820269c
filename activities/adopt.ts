/**
 * Create-or-adopt: the create half of every idempotent step. A retried create (the worker died after the API
 * call, or the reply was lost) finds the object by its deterministic name and adopts it if it carries this
 * attempt's labels; anything else under that name is a conflict, never silently reused.
 */
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { ApplicationFailure } from '@temporalio/common';
import { LABELS } from '../core/names';
import { FAILURE, isAlreadyExists, kubeCall, kubeFailure } from './kube';

export async function createOrAdopt<T extends { metadata?: V1ObjectMeta }>(
  kind: string,
  desired: T,
  create: () => Promise<T>,
  read: () => Promise<T>,
): Promise<{ object: T; adopted: boolean }> {
  try {
    return { object: await create(), adopted: false };
  } catch (err) {
    if (!isAlreadyExists(err)) throw kubeFailure(err, `create ${kind} ${desired.metadata?.name}`);
  }
  const existing = await kubeCall(`read existing ${kind} ${desired.metadata?.name}`, read);
  const want = desired.metadata?.labels ?? {};
  const have = existing.metadata?.labels ?? {};
  const ours = [LABELS.managedBy, LABELS.execution, LABELS.attempt, LABELS.session].every((k) => have[k] === want[k]);
  if (!ours) {
    throw ApplicationFailure.nonRetryable(
      `${kind} ${desired.metadata?.name} exists but belongs to another execution`,
      FAILURE.nameConflict,
    );
  }
  return { object: existing, adopted: true };
}

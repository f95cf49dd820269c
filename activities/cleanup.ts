/**
 * Step 5, the compensation: deletes the attempt's Job (its pods go with it) and ConfigMap, and waits until no pod
 * of the attempt is left. Idempotent: what is already gone counts as deleted. The workflow retries it until it
 * succeeds.
 */
import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import type { AttemptRef, CleanupResult } from '../core/attempt';
import { resourceNames } from '../core/names';
import type { ActivityDeps } from './deps';
import { isNotFound, kubeFailure } from './kube';

/** How long to wait for pods to go before deleting them directly. */
const POD_GRACE_MS = 10_000;

export function cleanupActivity({ kube }: ActivityDeps) {
  return async function cleanup(ref: AttemptRef): Promise<CleanupResult> {
    const ctx = Context.current();
    const { name, attemptSelector } = resourceNames(ref.executionId, ref.attempt);
    const { namespace } = ref;
    const gone = async (what: string, del: () => Promise<unknown>): Promise<boolean> => {
      try {
        await del();
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw kubeFailure(err, `delete ${what}`);
      }
    };
    // Background propagation: the Job goes now and the garbage collector takes its pods (the API's default for
    // Jobs would orphan them).
    const jobDeleted = await gone(`Job ${name}`, () =>
      kube.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }),
    );
    const configMapDeleted = await gone(`ConfigMap ${name}`, () => kube.core.deleteNamespacedConfigMap({ name, namespace }));
    const started = Date.now();
    for (;;) {
      let pods;
      try {
        pods = await kube.core.listNamespacedPod({ namespace, labelSelector: attemptSelector });
      } catch (err) {
        throw kubeFailure(err, `list pods of ${name}`);
      }
      const left = pods.items.filter((p) => !p.metadata?.deletionTimestamp || Date.now() - started > POD_GRACE_MS);
      if (pods.items.length === 0) return { jobDeleted, configMapDeleted, podsRemaining: 0, at: Date.now() };
      ctx.heartbeat({ podsRemaining: pods.items.length });
      if (Date.now() - started > POD_GRACE_MS) {
        // The garbage collector is slow or gone: delete what is left directly, without grace.
        for (const p of left) {
          await gone(`pod ${p.metadata!.name}`, () =>
            kube.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace, gracePeriodSeconds: 0 }),
          );
        }
      }
      if (Date.now() - started > 6 * POD_GRACE_MS) {
        throw ApplicationFailure.retryable(`${pods.items.length} pod(s) of ${name} still present`, 'CleanupIncomplete');
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };
}

/**
 * The compensation step: deletes whatever the attempt's sandbox was made of, whatever its kind (its Job, the pod
 * going with it, and ConfigMap; or its claimed pool pod), found by the attempt's labels, and waits, on a watch,
 * until no pod of the attempt is left. Idempotent: what is already gone counts as deleted. The workflow retries it
 * until it succeeds.
 */
import { ApplicationFailure } from '@temporalio/common';
import { Context } from '@temporalio/activity';
import type { AttemptRef, CleanupResult } from '../core/attempt';
import { STEP_FAILURES } from '../core/failures';
import { resourceNames } from '../core/names';
import { sandboxTraits } from '../core/sandbox';
import { attemptAttributes, TRACE_ATTRIBUTES } from '../core/trace';
import { AttemptPods } from './attempt-pods';
import type { ActivityDeps } from './deps';
import { kubeCallOrMissing } from './kube';
import { deleteAttemptObjects, type Deleted } from './sandbox-objects';
import { annotateSpan } from './trace';

/** How long to wait for pods to go before deleting them directly, without grace. */
const POD_GRACE_MS = 10_000;
/** How long one try waits in all before it fails (and is retried). */
const GIVE_UP_MS = 6 * POD_GRACE_MS;

export function cleanupActivity({ kube }: ActivityDeps) {
  return async function cleanup(ref: AttemptRef): Promise<CleanupResult> {
    const ctx = Context.current();
    const { name, attemptSelector } = resourceNames(ref.executionId, ref.attempt);
    const { namespace } = ref;
    annotateSpan(attemptAttributes({ ...ref, objects: name }));
    // A kind of sandbox with no objects of its own (a claimed pool pod) had no Job or ConfigMap made for it; an
    // unknown kind (a run step that never reported) may have had both.
    const deleted: Deleted =
      ref.sandbox && sandboxTraits(ref.sandbox).objects.length === 0
        ? { jobDeleted: false, configMapDeleted: false }
        : await deleteAttemptObjects(kube, namespace, name);
    const pods = new AttemptPods(kube, namespace, attemptSelector);
    const started = Date.now();
    let forced = false;
    try {
      await pods.start(true);
      // "Nothing left" is never a cache's word alone (it may not have seen a pod, or a claim's labels, yet).
      if (pods.shared && pods.all.length === 0) await pods.resync(true);
      const podNames = pods.all.map((p) => p.metadata?.name).filter((n) => n !== undefined);
      if (podNames.length > 0) annotateSpan({ [TRACE_ATTRIBUTES.pod]: podNames.join(',') });
      // A pod no Job owns (a claimed pool pod) is deleted directly: its one program has run; it is never reused.
      for (const p of pods.all.filter((x) => !x.metadata?.ownerReferences?.length && !x.metadata?.deletionTimestamp)) {
        await kubeCallOrMissing(`delete pod ${p.metadata!.name}`, () =>
          kube.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace }),
        );
      }
      for (;;) {
        const left = pods.all;
        if (left.length === 0) return { ...deleted, podsRemaining: 0, at: Date.now() };
        ctx.heartbeat({ podsRemaining: left.length });
        const waited = Date.now() - started;
        if (waited > GIVE_UP_MS) {
          throw ApplicationFailure.retryable(
            `${left.length} pod(s) of ${name} still present`,
            STEP_FAILURES.cleanupIncomplete,
          );
        }
        if (waited > POD_GRACE_MS && !forced) {
          // The garbage collector or the kubelet is slow or gone: delete what is left directly, without grace.
          forced = true;
          for (const p of left) {
            await kubeCallOrMissing(`delete pod ${p.metadata!.name}`, () =>
              kube.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace, gracePeriodSeconds: 0 }),
            );
          }
        }
        await pods.changed(1000);
        if (!pods.isWatching) await pods.start(true);
      }
    } finally {
      pods.stop();
    }
  };
}

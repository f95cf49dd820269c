/**
 * The reconciler's activities: find every Job, ConfigMap, warm pool pod and session pod the project made, ask
 * Temporal whether the workflow that owns each (its execution, its session, or for a pool pod nobody claimed, its
 * pool) is still running, and
 * delete what belongs to workflows that are closed, unknown to Temporal, or older than a hard ceiling. Catches what
 * compensation cannot reach: a terminated workflow (terminate runs no workflow code), a reset namespace, a cluster
 * restored from a backup, a pool whose workers are all gone.
 */
import { ApplicationFailure } from '@temporalio/common';
import { STEP_FAILURES } from '../core/failures';
import { ANNOTATIONS, LABELS, MANAGED_BY } from '../core/names';
import type { ActivityDeps } from './deps';
import { kubeCall, kubeCallOrMissing } from './kube';
import { deleteAttemptObjects, retirePoolPod } from './sandbox-objects';

export interface SandboxObject {
  kind: 'Job' | 'ConfigMap' | 'Pod';
  name: string;
  /**
   * The owning workflow's id, from the object's annotations: its execution, its pool (an unclaimed pool pod), or
   * its session (a session's pod).
   */
  owner?: string;
  createdAt: number;
  /** Its own age ceiling, when it has a longer life than the reconciler's (a session's pod: the session's lifetime). */
  maxAgeSeconds?: number;
}

export type OwnerState = 'running' | 'closed' | 'missing';

type Meta = {
  metadata?: { name?: string; annotations?: Record<string, string>; creationTimestamp?: Date };
  spec?: { activeDeadlineSeconds?: number };
};

const describe =
  (kind: SandboxObject['kind']) =>
  (o: Meta): SandboxObject => ({
    kind,
    name: o.metadata!.name!,
    owner:
      o.metadata?.annotations?.[ANNOTATIONS.executionId] ??
      o.metadata?.annotations?.[ANNOTATIONS.poolOwner] ??
      o.metadata?.annotations?.[ANNOTATIONS.sessionId],
    createdAt: new Date(o.metadata?.creationTimestamp ?? 0).getTime(),
    ...(o.spec?.activeDeadlineSeconds && o.metadata?.annotations?.[ANNOTATIONS.sessionId]
      ? { maxAgeSeconds: o.spec.activeDeadlineSeconds + 60 }
      : {}),
  });

export function reconcileActivities({ kube, policy, temporal }: ActivityDeps) {
  const namespace = policy.namespace;
  const labelSelector = `${LABELS.managedBy}=${MANAGED_BY}`;
  return {
    async listSandboxObjects(): Promise<SandboxObject[]> {
      const [jobs, cms, pods, sessionPods] = await kubeCall('list sandbox objects', () =>
        Promise.all([
          kube.batch.listNamespacedJob({ namespace, labelSelector }),
          // The namespace's launcher ConfigMap is no attempt's: it stays.
          kube.core.listNamespacedConfigMap({ namespace, labelSelector: `${labelSelector},!${LABELS.launcher}` }),
          kube.core.listNamespacedPod({ namespace, labelSelector: `${labelSelector},${LABELS.pool}` }),
          kube.core.listNamespacedPod({ namespace, labelSelector: `${labelSelector},${LABELS.session}` }),
        ]),
      );
      return [
        ...jobs.items.map(describe('Job')),
        ...cms.items.map(describe('ConfigMap')),
        ...pods.items.map(describe('Pod')),
        ...sessionPods.items.map(describe('Pod')),
      ];
    },

    /** The state of each owning workflow (an execution or a pool). */
    async executionStates(executionIds: string[]): Promise<Record<string, OwnerState>> {
      if (!temporal)
        throw ApplicationFailure.nonRetryable('the reconciler needs a Temporal client', STEP_FAILURES.misconfigured);
      const states: Record<string, OwnerState> = {};
      for (const id of executionIds) {
        try {
          const { status } = await temporal.workflow.getHandle(id).describe();
          states[id] = status.name === 'RUNNING' ? 'running' : 'closed';
        } catch (err) {
          if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
          states[id] = 'missing';
        }
      }
      return states;
    },

    async deleteSandboxObjects(objects: SandboxObject[]): Promise<number> {
      let deleted = 0;
      for (const o of objects) {
        if (o.kind === 'Pod') {
          const pod = await kubeCallOrMissing(`read pool pod ${o.name}`, () =>
            kube.core.readNamespacedPod({ name: o.name, namespace }),
          );
          if (!pod) continue;
          if (pod.metadata?.labels?.[LABELS.session] !== undefined) {
            // A session's pod: its session is over (or its lifetime is), so it goes.
            if (await deleteClaimedPod(kube, namespace, o.name)) deleted++;
            continue;
          }
          // Unclaimed: retired (so never one claimed meanwhile). Claimed: its execution is gone, so it goes.
          const claimed = pod.metadata?.labels?.[LABELS.poolState] === 'claimed';
          if (claimed ? await deleteClaimedPod(kube, namespace, o.name) : await retirePoolPod(kube, namespace, pod))
            deleted++;
          continue;
        }
        const d = await deleteAttemptObjects(kube, namespace, o.name, o.kind);
        if (d.jobDeleted || d.configMapDeleted) deleted++;
      }
      return deleted;
    },
  };
}

async function deleteClaimedPod(kube: ActivityDeps['kube'], namespace: string, name: string): Promise<boolean> {
  return (
    (await kubeCallOrMissing(`delete pod ${name}`, () => kube.core.deleteNamespacedPod({ name, namespace }))) !==
    undefined
  );
}

/**
 * The reconciler's activities: find every Job and ConfigMap the project made, ask Temporal whether the execution
 * that owns each is still running, and delete what belongs to executions that are closed, unknown to Temporal,
 * or older than a hard ceiling. Catches what compensation cannot reach: a terminated workflow (terminate runs no
 * workflow code), a reset namespace, a cluster restored from a backup.
 */
import type { Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { STEP_FAILURES } from '../core/failures';
import { ANNOTATIONS, LABELS, MANAGED_BY } from '../core/names';
import type { ActivityDeps } from './deps';
import { kubeCall } from './kube';
import { deleteAttemptObjects } from './sandbox-objects';

export interface SandboxObject {
  kind: 'Job' | 'ConfigMap';
  name: string;
  /** The owning execution (workflow id), from the object's annotation. */
  executionId?: string;
  createdAt: number;
}

export type OwnerState = 'running' | 'closed' | 'missing';

type Meta = { metadata?: { name?: string; annotations?: Record<string, string>; creationTimestamp?: Date } };

const describe =
  (kind: SandboxObject['kind']) =>
  (o: Meta): SandboxObject => ({
    kind,
    name: o.metadata!.name!,
    executionId: o.metadata?.annotations?.[ANNOTATIONS.executionId],
    createdAt: new Date(o.metadata?.creationTimestamp ?? 0).getTime(),
  });

export function reconcileActivities({ kube, policy }: ActivityDeps, temporal: Client | undefined) {
  const namespace = policy.namespace;
  const labelSelector = `${LABELS.managedBy}=${MANAGED_BY}`;
  return {
    async listSandboxObjects(): Promise<SandboxObject[]> {
      const [jobs, cms] = await kubeCall('list sandbox objects', () =>
        Promise.all([
          kube.batch.listNamespacedJob({ namespace, labelSelector }),
          kube.core.listNamespacedConfigMap({ namespace, labelSelector }),
        ]),
      );
      return [...jobs.items.map(describe('Job')), ...cms.items.map(describe('ConfigMap'))];
    },

    async executionStates(executionIds: string[]): Promise<Record<string, OwnerState>> {
      if (!temporal) throw ApplicationFailure.nonRetryable('the reconciler needs a Temporal client', STEP_FAILURES.misconfigured);
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
        const d = await deleteAttemptObjects(kube, namespace, o.name, o.kind);
        if (d.jobDeleted || d.configMapDeleted) deleted++;
      }
      return deleted;
    },
  };
}

/**
 * The cold sandbox: a ConfigMap holding the task and a hardened Job made for the attempt (sandbox-objects.ts). The
 * task comes with the pod; a retried create adopts what an earlier try made.
 */
import { log } from '@temporalio/activity';
import { resourceNames } from '../core/names';
import { kubeCallOrMissing } from './kube';
import type { SandboxSource } from './sandboxes';
import { createCodeConfigMap, createSandboxJob, makeConfigMapDependent } from './sandbox-objects';

export const coldSandboxes: SandboxSource = {
  async acquire(deps, spec) {
    // The ConfigMap first: the pod mounts it, and must not wait on a retry of the mount.
    await createCodeConfigMap(deps, spec);
    const created = await createSandboxJob(deps, spec);
    const settled = makeConfigMapDependent(deps.kube, spec.policy.namespace, created).catch((err: unknown) => {
      log.warn('could not make the ConfigMap a dependent of its Job; cleanup and the reconciler still remove it', {
        error: err instanceof Error ? err.message : String(err),
      });
    });
    // An adopted Job was made by an earlier try that died before its heartbeat: resume as from an empty one.
    return {
      kind: 'cold',
      acquiredAt: created.createdAt,
      job: created.object,
      settled,
      resumed: created.adopted ? {} : undefined,
      from: created.adopted ? undefined : { resourceVersion: created.object.metadata?.resourceVersion },
    };
  },

  async find(deps, spec) {
    const { name } = resourceNames(spec.executionId, spec.attempt);
    const job = await kubeCallOrMissing(`look for Job ${name}`, () =>
      deps.kube.batch.readNamespacedJob({ name, namespace: spec.policy.namespace }),
    );
    if (!job) return undefined;
    const created = job.metadata?.creationTimestamp;
    return { kind: 'cold', acquiredAt: created ? new Date(created).getTime() : Date.now(), job, resumed: {} };
  },

  async resume(_deps, _spec, recorded) {
    return { kind: 'cold', acquiredAt: recorded.acquiredAt, resumed: recorded.progress };
  },
};

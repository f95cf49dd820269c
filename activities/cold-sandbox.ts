/**
 * The cold sandbox: a ConfigMap holding the task and a hardened Job made for the attempt (sandbox-objects.ts), which
 * mounts the namespace's launcher ConfigMap beside it (launcher-configmap.ts). The task comes with the pod; a retried
 * create adopts what an earlier try made.
 */
import { Context, log } from '@temporalio/activity';
import { resourceNames } from '../core/names';
import type { ActivityDeps } from './deps';
import { kubeCallOrMissing } from './kube';
import { ensureLauncherConfigMap } from './launcher-configmap';
import type { SandboxSource } from './sandboxes';
import { createCodeConfigMap, createSandboxJob, makeConfigMapDependent } from './sandbox-objects';

export const coldSandboxes: SandboxSource = {
  async acquire(deps, spec) {
    // The ConfigMaps first: the pod mounts them, and must not wait on a retry of the mount. A retry looks for the
    // launcher's again (the attempt before may have failed for want of it).
    const recheck = spec.attempt > 1 || Context.current().info.attempt > 1;
    await Promise.all([
      ensureLauncherConfigMap(deps.kube, spec.policy.namespace, deps.launcherSource, { recheck }),
      createCodeConfigMap(deps, spec),
    ]);
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
      whileStarting: () => launcherAgain(deps, spec.policy.namespace),
    };
  },

  async find(deps, spec) {
    const { name } = resourceNames(spec.executionId, spec.attempt);
    const job = await kubeCallOrMissing(`look for Job ${name}`, () =>
      deps.kube.batch.readNamespacedJob({ name, namespace: spec.policy.namespace }),
    );
    if (!job) return undefined;
    const created = job.metadata?.creationTimestamp;
    return {
      kind: 'cold',
      acquiredAt: created ? new Date(created).getTime() : Date.now(),
      job,
      resumed: {},
      whileStarting: () => launcherAgain(deps, spec.policy.namespace),
    };
  },

  async resume(deps, spec, recorded) {
    return {
      kind: 'cold',
      acquiredAt: recorded.acquiredAt,
      resumed: recorded.progress,
      whileStarting: () => launcherAgain(deps, spec.policy.namespace),
    };
  },
};

/**
 * A pod whose program has not started may be waiting for its launcher ConfigMap (deleted by hand after this worker
 * made it): the kubelet mounts it on its next try once it is there again.
 */
function launcherAgain(deps: ActivityDeps, namespace: string): Promise<string> {
  return ensureLauncherConfigMap(deps.kube, namespace, deps.launcherSource, { recheck: true });
}

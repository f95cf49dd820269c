/**
 * The Kubernetes objects of one attempt: the ConfigMap holding the code and the hardened Job, created (or adopted
 * after a retry) and deleted. Every step that makes or removes them goes through here.
 */
import { PatchStrategy, setHeaderOptions, type V1Job, type V1Pod } from '@kubernetes/client-node';
import type { AttemptSpec } from '../core/attempt';
import { buildConfigMap, buildJob, ownerReferenceTo } from '../core/manifests';
import { LABELS } from '../core/names';
import { createOrAdopt } from './adopt';
import { attemptNetwork } from './egress';
import type { ActivityDeps } from './deps';
import { apiStatus, kubeCall, kubeCallOrMissing, kubeFailure, type Kube } from './kube';

export interface CreatedJob {
  object: V1Job;
  name: string;
  uid: string;
  /** When the Job was created, by the apiserver's clock when adopted, else by ours. */
  createdAt: number;
  adopted: boolean;
}

export async function createCodeConfigMap(
  deps: ActivityDeps,
  spec: AttemptSpec,
): Promise<{ name: string; adopted: boolean }> {
  const { kube, launcherSource } = deps;
  const namespace = spec.policy.namespace;
  const body = buildConfigMap({ ...spec, namespace, launcherSource, network: attemptNetwork(deps, spec) });
  const name = body.metadata!.name!;
  const { adopted } = await createOrAdopt(
    'ConfigMap',
    body,
    () => kube.core.createNamespacedConfigMap({ namespace, body }),
    () => kube.core.readNamespacedConfigMap({ name, namespace }),
  );
  return { name, adopted };
}

export async function createSandboxJob(deps: ActivityDeps, spec: AttemptSpec): Promise<CreatedJob> {
  const { kube, launcherSource } = deps;
  const namespace = spec.policy.namespace;
  const body = buildJob({ ...spec, namespace, launcherSource, network: attemptNetwork(deps, spec) });
  const name = body.metadata!.name!;
  const { object, adopted } = await createOrAdopt(
    'Job',
    body,
    () => kube.batch.createNamespacedJob({ namespace, body }),
    () => kube.batch.readNamespacedJob({ name, namespace }),
  );
  const created = object.metadata?.creationTimestamp;
  return {
    object,
    name,
    uid: object.metadata!.uid!,
    createdAt: adopted && created ? new Date(created).getTime() : Date.now(),
    adopted,
  };
}

/**
 * Makes the ConfigMap a dependent of its Job, so deleting the Job (by us, by its TTL or by the reconciler) takes the
 * ConfigMap with it: a backstop for when nothing of ours is left to delete it.
 */
export async function makeConfigMapDependent(
  kube: Kube,
  namespace: string,
  job: { name: string; uid: string },
): Promise<void> {
  await kubeCall(`make ConfigMap ${job.name} a dependent of its Job`, () =>
    kube.core.patchNamespacedConfigMap(
      { name: job.name, namespace, body: { metadata: { ownerReferences: [ownerReferenceTo(job)] } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    ),
  );
}

export interface Deleted {
  jobDeleted: boolean;
  configMapDeleted: boolean;
}

/**
 * Deletes an attempt's Job (its pod goes with it: Background propagation, where the API's default for Jobs would
 * orphan the pod) and ConfigMap. What is already gone counts as deleted.
 */
export async function deleteAttemptObjects(
  kube: Kube,
  namespace: string,
  name: string,
  only?: 'Job' | 'ConfigMap',
): Promise<Deleted> {
  const jobDeleted =
    only !== 'ConfigMap' &&
    (await kubeCallOrMissing(`delete Job ${name}`, () =>
      kube.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }),
    )) !== undefined;
  const configMapDeleted =
    only !== 'Job' &&
    (await kubeCallOrMissing(`delete ConfigMap ${name}`, () =>
      kube.core.deleteNamespacedConfigMap({ name, namespace }),
    )) !== undefined;
  return { jobDeleted, configMapDeleted };
}

/**
 * Deletes a warm pool pod nobody has claimed. It is first marked `retiring` with a conditional write, the same way a
 * claim is made, so a claim and a deletion of the same pod can never both succeed; a pod whose status merely changed
 * meanwhile is read again and retried. Without grace: nothing of a program runs in a pod deleted this way. False
 * when the pod was claimed first, or was already gone.
 */
export async function retirePoolPod(kube: Kube, namespace: string, pod: V1Pod): Promise<boolean> {
  let current: V1Pod | undefined = pod;
  for (let i = 0; i < 5 && current; i++) {
    if (current.metadata?.labels?.[LABELS.poolState] === 'claimed') return false;
    const name: string = current.metadata!.name!;
    try {
      await kube.core.patchNamespacedPod(
        {
          name,
          namespace,
          body: {
            metadata: {
              resourceVersion: current.metadata!.resourceVersion,
              labels: { [LABELS.poolState]: 'retiring' },
            },
          },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      await kubeCallOrMissing(`delete pool pod ${name}`, () =>
        kube.core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0, body: { gracePeriodSeconds: 0 } }),
      );
      return true;
    } catch (err) {
      const s = apiStatus(err);
      if (s?.code === 404) return false;
      if (s?.code !== 409) throw kubeFailure(err, `retire pool pod ${name}`);
      current = await kubeCallOrMissing(`read pool pod ${name}`, (): Promise<V1Pod> =>
        kube.core.readNamespacedPod({ name, namespace }),
      );
    }
  }
  return false;
}

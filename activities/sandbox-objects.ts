/**
 * The Kubernetes objects of one attempt: the ConfigMap holding the code and the hardened Job, created (or adopted
 * after a retry) and deleted. Every step that makes or removes them goes through here.
 */
import { PatchStrategy, setHeaderOptions, type V1Job } from '@kubernetes/client-node';
import type { AttemptSpec } from '../core/attempt';
import { buildConfigMap, buildJob, ownerReferenceTo } from '../core/manifests';
import { createOrAdopt } from './adopt';
import type { ActivityDeps } from './deps';
import { kubeCall, kubeCallOrMissing, type Kube } from './kube';

export interface CreatedJob {
  object: V1Job;
  name: string;
  uid: string;
  /** When the Job was created, by the apiserver's clock when adopted, else by ours. */
  createdAt: number;
  adopted: boolean;
}

export async function createCodeConfigMap({ kube, launcherSource }: ActivityDeps, spec: AttemptSpec): Promise<{ name: string; adopted: boolean }> {
  const namespace = spec.policy.namespace;
  const body = buildConfigMap({ ...spec, namespace, launcherSource });
  const name = body.metadata!.name!;
  const { adopted } = await createOrAdopt(
    'ConfigMap',
    body,
    () => kube.core.createNamespacedConfigMap({ namespace, body }),
    () => kube.core.readNamespacedConfigMap({ name, namespace }),
  );
  return { name, adopted };
}

export async function createSandboxJob({ kube, launcherSource }: ActivityDeps, spec: AttemptSpec): Promise<CreatedJob> {
  const namespace = spec.policy.namespace;
  const body = buildJob({ ...spec, namespace, launcherSource });
  const name = body.metadata!.name!;
  const { object, adopted } = await createOrAdopt(
    'Job',
    body,
    () => kube.batch.createNamespacedJob({ namespace, body }),
    () => kube.batch.readNamespacedJob({ name, namespace }),
  );
  const created = object.metadata?.creationTimestamp;
  return { object, name, uid: object.metadata!.uid!, createdAt: adopted && created ? new Date(created).getTime() : Date.now(), adopted };
}

/**
 * Makes the ConfigMap a dependent of its Job, so deleting the Job (by us, by its TTL or by the reconciler) takes the
 * ConfigMap with it: a backstop for when nothing of ours is left to delete it.
 */
export async function makeConfigMapDependent(kube: Kube, namespace: string, job: { name: string; uid: string }): Promise<void> {
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
export async function deleteAttemptObjects(kube: Kube, namespace: string, name: string, only?: 'Job' | 'ConfigMap'): Promise<Deleted> {
  const jobDeleted =
    only !== 'ConfigMap' &&
    (await kubeCallOrMissing(`delete Job ${name}`, () =>
      kube.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }),
    )) !== undefined;
  const configMapDeleted =
    only !== 'Job' &&
    (await kubeCallOrMissing(`delete ConfigMap ${name}`, () => kube.core.deleteNamespacedConfigMap({ name, namespace }))) !==
      undefined;
  return { jobDeleted, configMapDeleted };
}

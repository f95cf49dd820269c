/**
 * Step 2: the hardened Job. Once it exists the ConfigMap is made its dependent, so deleting the Job (by us, by
 * its TTL or by the reconciler) takes the ConfigMap with it.
 */
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { AttemptSpec, Created } from '../core/attempt';
import { buildJob, ownerReferenceTo } from '../core/manifests';
import { createOrAdopt } from './adopt';
import type { ActivityDeps } from './deps';
import { kubeFailure } from './kube';

export function createJobActivity({ kube, launcherSource }: ActivityDeps) {
  return async function createJob(spec: AttemptSpec): Promise<Created> {
    const namespace = spec.policy.namespace;
    const body = buildJob({ ...spec, namespace, launcherSource });
    const name = body.metadata!.name!;
    const { object, adopted } = await createOrAdopt(
      'Job',
      body,
      () => kube.batch.createNamespacedJob({ namespace, body }),
      () => kube.batch.readNamespacedJob({ name, namespace }),
    );
    const owner = ownerReferenceTo({ name, uid: object.metadata!.uid! });
    try {
      await kube.core.patchNamespacedConfigMap(
        { name, namespace, body: { metadata: { ownerReferences: [owner] } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    } catch (err) {
      throw kubeFailure(err, `make ConfigMap ${name} a dependent of its Job`);
    }
    return { name, adopted, at: Date.now() };
  };
}

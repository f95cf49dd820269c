/** Step 1: the ConfigMap that holds the code, the launcher and the input files. */
import type { AttemptSpec, Created } from '../core/attempt';
import { buildConfigMap } from '../core/manifests';
import { createOrAdopt } from './adopt';
import type { ActivityDeps } from './deps';

export function createCodeConfigMapActivity({ kube, launcherSource }: ActivityDeps) {
  return async function createCodeConfigMap(spec: AttemptSpec): Promise<Created> {
    const namespace = spec.policy.namespace;
    const body = buildConfigMap({ ...spec, namespace, launcherSource });
    const name = body.metadata!.name!;
    const { adopted } = await createOrAdopt(
      'ConfigMap',
      body,
      () => kube.core.createNamespacedConfigMap({ namespace, body }),
      () => kube.core.readNamespacedConfigMap({ name, namespace }),
    );
    return { name, adopted, at: Date.now() };
  };
}

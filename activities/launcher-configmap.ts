/**
 * The namespace's launcher ConfigMap (core/manifests.ts `buildLauncherConfigMap`): made by the first cold sandbox of
 * a worker in a namespace (or found, when another worker made it), then taken as there. A retried attempt, and a run
 * step whose program has not started after 10 s, make sure of it again, so one deleted by hand is made again. It is
 * never an attempt's object: cleanup and the reconciler leave it.
 */
import { ApplicationFailure } from '@temporalio/common';
import { buildLauncherConfigMap } from '../core/manifests';
import { FAILURE, isAlreadyExists, kubeCall, kubeFailure, type Kube } from './kube';

/** Per Kubernetes client (one per worker): the namespaces whose launcher ConfigMap is known to exist. */
const ensured = new WeakMap<Kube, Map<string, Promise<string>>>();

/**
 * Makes sure the launcher ConfigMap exists in `namespace` and holds `launcherSource`; returns its name. Asks the
 * apiserver once per worker and namespace, or again with `recheck`. One under the name with other content is
 * refused (a name conflict), never mounted.
 */
export function ensureLauncherConfigMap(
  kube: Kube,
  namespace: string,
  launcherSource: string,
  options: { recheck?: boolean } = {},
): Promise<string> {
  let known = ensured.get(kube);
  if (!known) ensured.set(kube, (known = new Map<string, Promise<string>>()));
  const key = `${namespace}\0${launcherSource.length}\0${launcherSource}`;
  const earlier = known.get(key);
  if (earlier && !options.recheck) return earlier;
  const making = make(kube, namespace, launcherSource);
  known.set(key, making);
  // A failure is not remembered: the next attempt asks again.
  making.catch(() => known.delete(key));
  return making;
}

async function make(kube: Kube, namespace: string, launcherSource: string): Promise<string> {
  const body = buildLauncherConfigMap(namespace, launcherSource);
  const name = body.metadata!.name!;
  try {
    await kube.core.createNamespacedConfigMap({ namespace, body });
    return name;
  } catch (err) {
    if (!isAlreadyExists(err)) throw kubeFailure(err, `create the launcher ConfigMap ${name}`);
  }
  const existing = await kubeCall(`read the launcher ConfigMap ${name}`, () =>
    kube.core.readNamespacedConfigMap({ name, namespace }),
  );
  if (existing.data?.['launcher.py'] !== launcherSource) {
    throw ApplicationFailure.nonRetryable(
      `ConfigMap ${name} exists in ${namespace} but does not hold this worker's launcher; delete it and it will be made again`,
      FAILURE.nameConflict,
    );
  }
  return name;
}

/**
 * ensureLauncherConfigMap against a fake apiserver: asked once per client and namespace, again on a recheck or after
 * a failure, an existing one taken only when it holds this launcher. (On the real stack: launcher-configmap.test.ts.)
 */
import { ApiException, type V1ConfigMap } from '@kubernetes/client-node';
import { ApplicationFailure } from '@temporalio/common';
import type { Kube } from '../../activities/kube';
import { ensureLauncherConfigMap } from '../../activities/launcher-configmap';
import { launcherConfigMapName } from '../../core/manifests';

const status = (code: number, reason: string) =>
  new ApiException(code, 'HTTP', JSON.stringify({ kind: 'Status', reason, message: reason }), {});

/** A namespace's ConfigMaps, with the calls made to them. */
function fakeKube(fail?: () => Error | undefined) {
  const stored = new Map<string, V1ConfigMap>();
  const calls: string[] = [];
  const core = {
    async createNamespacedConfigMap({ namespace, body }: { namespace: string; body: V1ConfigMap }) {
      calls.push(`create ${namespace}`);
      const err = fail?.();
      if (err) throw err;
      const key = `${namespace}/${body.metadata!.name}`;
      if (stored.has(key)) throw status(409, 'AlreadyExists');
      stored.set(key, body);
      return body;
    },
    async readNamespacedConfigMap({ namespace, name }: { namespace: string; name: string }) {
      calls.push(`read ${namespace}`);
      const cm = stored.get(`${namespace}/${name}`);
      if (!cm) throw status(404, 'NotFound');
      return cm;
    },
  };
  return { kube: { core } as unknown as Kube, stored, calls };
}

const SOURCE = '# the launcher';
const NAME = launcherConfigMapName(SOURCE);

test('made once per client and namespace; a recheck asks again and finds it', async () => {
  const { kube, stored, calls } = fakeKube();
  expect(await ensureLauncherConfigMap(kube, 'a', SOURCE)).toBe(NAME);
  expect(await ensureLauncherConfigMap(kube, 'a', SOURCE)).toBe(NAME);
  expect(calls).toEqual(['create a']);
  expect(stored.get(`a/${NAME}`)!.data).toEqual({ 'launcher.py': SOURCE });
  expect(await ensureLauncherConfigMap(kube, 'b', SOURCE)).toBe(NAME);
  expect(await ensureLauncherConfigMap(kube, 'a', SOURCE, { recheck: true })).toBe(NAME);
  expect(calls).toEqual(['create a', 'create b', 'create a', 'read a']);
  // Deleted by hand: a recheck makes it again.
  stored.delete(`a/${NAME}`);
  await ensureLauncherConfigMap(kube, 'a', SOURCE, { recheck: true });
  expect(stored.has(`a/${NAME}`)).toBe(true);
});

test("another worker's (the same launcher) is taken as it is", async () => {
  const first = fakeKube();
  await ensureLauncherConfigMap(first.kube, 'a', SOURCE);
  const second = { ...first, kube: { core: first.kube.core } as unknown as Kube };
  expect(await ensureLauncherConfigMap(second.kube, 'a', SOURCE)).toBe(NAME);
  expect(first.calls).toEqual(['create a', 'create a', 'read a']);
});

test('one under the name with other content is a non-retryable name conflict, and not remembered', async () => {
  const { kube, stored } = fakeKube();
  stored.set(`a/${NAME}`, { metadata: { name: NAME }, data: { 'launcher.py': 'print("impostor")' } });
  const err = await ensureLauncherConfigMap(kube, 'a', SOURCE).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  expect(err).toMatchObject({ type: 'NameConflict', nonRetryable: true });
  stored.delete(`a/${NAME}`);
  expect(await ensureLauncherConfigMap(kube, 'a', SOURCE)).toBe(NAME);
  expect(stored.get(`a/${NAME}`)!.data).toEqual({ 'launcher.py': SOURCE });
});

test('a failed create is retryable and not remembered: the next call asks again', async () => {
  let down = true;
  const { kube, calls } = fakeKube(() => (down ? new Error('connect ECONNREFUSED') : undefined));
  const err = await ensureLauncherConfigMap(kube, 'a', SOURCE).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  expect((err as ApplicationFailure).nonRetryable).toBe(false);
  down = false;
  expect(await ensureLauncherConfigMap(kube, 'a', SOURCE)).toBe(NAME);
  expect(calls).toEqual(['create a', 'create a']);
});

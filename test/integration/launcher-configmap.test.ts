/**
 * The namespace's launcher ConfigMap on the real stack: a cold sandbox mounts the launcher from it, beside its own
 * ConfigMap, which then holds the task alone; cleanup leaves it; deleted by hand while a worker runs, the next cold
 * execution makes it again and succeeds; one under its name with other content is refused, never mounted.
 */
import { ApplicationFailure } from '@temporalio/common';
import { ensureLauncherConfigMap } from '../../activities/launcher-configmap';
import { createKube } from '../../activities/kube';
import { launcherConfigMapName } from '../../core/manifests';
import { resourceNames } from '../../core/names';
import { loadKubeConfig } from '../../worker/connect';
import { readLauncherSource } from '../../worker/worker';
import {
  adminKube,
  leftoversAfterCompletion,
  NOTHING_LEFT,
  SANDBOX_NAMESPACE,
  startWorker,
  uniqueId,
  whenRunning,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();
const source = readLauncherSource();
const name = launcherConfigMapName(source);
const namespace = SANDBOX_NAMESPACE;
let w: TestWorker;

beforeAll(async () => {
  w = await startWorker();
});
afterAll(async () => w?.stop());

const readLauncher = () => kube.core.readNamespacedConfigMap({ name, namespace });
const deleteLauncher = () =>
  kube.core.deleteNamespacedConfigMap({ name, namespace }).catch((err: unknown) => {
    if ((err as { code?: number }).code !== 404) throw err;
  });

test("a cold sandbox runs the namespace's launcher; its own ConfigMap holds the task alone; cleanup leaves the launcher's", async () => {
  const executionId = uniqueId('launcher-cm');
  const run = w.client.executeCode(
    { code: 'import time\nprint(len(open("/sandbox/launcher.py").read()), flush=True)\ntime.sleep(3)' },
    { executionId },
  );
  await whenRunning(kube, executionId);
  const own = await kube.core.readNamespacedConfigMap({ name: resourceNames(executionId, 1).name, namespace });
  expect(Object.keys(own.data ?? {}).sort()).toEqual(['code', 'task.json']);
  expect(JSON.stringify(own.data).length).toBeLessThan(2000);
  const r = await run;
  expect(r.status).toBe('succeeded');
  // The program saw the worker's launcher, whole, where the cold sandbox's command runs it from.
  expect(Number(r.stdout.trim())).toBe(source.length);
  expect(await leftoversAfterCompletion(kube, w.client, executionId)).toEqual(NOTHING_LEFT);
  expect((await readLauncher()).data?.['launcher.py']).toBe(source);
});

test('deleted by hand while the worker runs, the next cold execution still succeeds, first time', async () => {
  await w.client.executeCode({ code: 'print(1)' }, { executionId: uniqueId('launcher-cm-before') });
  await deleteLauncher();
  const executionId = uniqueId('launcher-cm-after');
  // Its pod starts from the kubelet's copy of the immutable ConfigMap, or, on a node without one, once the run step
  // (every 10 s while the program has not started) has made it again.
  const r = await w.client.executeCode({ code: 'print(2)' }, { executionId });
  expect(r).toMatchObject({ status: 'succeeded', stdout: '2\n', attempts: 1, sandbox: 'cold' });
  expect(await leftoversAfterCompletion(kube, w.client, executionId)).toEqual(NOTHING_LEFT);
  await ensureLauncherConfigMap(kube, namespace, source);
});

test('one under its name with other content is refused as a name conflict, and never taken as there', async () => {
  await deleteLauncher();
  await kube.core.createNamespacedConfigMap({
    namespace,
    body: { metadata: { name }, data: { 'launcher.py': 'print("not the launcher")' } },
  });
  try {
    // A worker's client that has not seen it yet.
    const fresh = createKube(loadKubeConfig(process.env.DS_ADMIN_KUBECONFIG ?? process.env.KUBECONFIG));
    const err = await ensureLauncherConfigMap(fresh, namespace, source).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect((err as ApplicationFailure).type).toBe('NameConflict');
    expect((err as ApplicationFailure).nonRetryable).toBe(true);
    expect((err as ApplicationFailure).message).toContain(name);
    // Not remembered: once the impostor is gone, the next look makes the real one.
    await deleteLauncher();
    expect(await ensureLauncherConfigMap(fresh, namespace, source)).toBe(name);
    expect((await readLauncher()).data?.['launcher.py']).toBe(source);
  } finally {
    const cm = await readLauncher().catch(() => undefined);
    if (cm?.data?.['launcher.py'] !== source) {
      await deleteLauncher();
      await ensureLauncherConfigMap(adminKube(), namespace, source);
    }
  }
});

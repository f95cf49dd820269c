/**
 * The reconciler removes what compensation cannot: a terminated execution runs no workflow code, so its Job,
 * pod and ConfigMap stay until the reconciler's Schedule finds that the execution is closed. A running
 * execution next to it is untouched.
 */
import {
  adminKube,
  eventually,
  leftovers,
  NOTHING_LEFT,
  startWorker,
  uniqueId,
  whenRunning,
  type TestWorker,
} from '../helpers/stack';
import { launcherConfigMapName } from '../../core/manifests';
import { sessionSelector } from '../../core/session';
import { readLauncherSource } from '../../worker/worker';

jest.setTimeout(240_000);
const kube = adminKube();
const PERIOD = 15;
let w: TestWorker;

beforeAll(async () => {
  w = await startWorker({ DS_RECONCILE_INTERVAL_SECONDS: String(PERIOD), DS_RECONCILE_MIN_AGE_SECONDS: '0' });
});
afterAll(async () => w?.stop());

test('a terminated execution is cleaned up within the period; a running one is untouched', async () => {
  const code = 'import time\nprint("up", flush=True)\ntime.sleep(600)';
  const terminated = uniqueId('terminated');
  const running = uniqueId('still-running');
  const a = await w.client.startExecution({ code, timeoutSeconds: 300 }, { executionId: terminated });
  const b = await w.client.startExecution({ code, timeoutSeconds: 300 }, { executionId: running });
  await whenRunning(kube, terminated);
  const runningPod = await whenRunning(kube, running);

  await a.terminate('test: terminate skips all workflow code, including cleanup');
  // Terminate runs nothing: the objects are still there right after it.
  const right = await leftovers(kube, terminated);
  expect(right.jobs).toHaveLength(1);
  expect(right.configMaps).toHaveLength(1);

  const terminatedAt = Date.now();
  await eventually(
    () => leftovers(kube, terminated),
    (l) => JSON.stringify(l) === JSON.stringify(NOTHING_LEFT),
    (PERIOD + 45) * 1000,
  );
  expect(Date.now() - terminatedAt).toBeLessThan((PERIOD + 45) * 1000);

  const other = await leftovers(kube, running);
  expect(other.jobs).toHaveLength(1);
  expect(other.configMaps).toHaveLength(1);
  expect(other.pods).toEqual([runningPod]);
  const pod = await kube.core.readNamespacedPod({ name: runningPod, namespace: 'durable-sandbox' });
  expect(pod.status?.containerStatuses?.[0].state?.running).toBeTruthy();
  expect((await w.client.getExecution(running)).state).toBe('running');

  const schedule = await w.worker.temporalClient.schedule.getHandle(w.config.reconcile.scheduleId).describe();
  expect(schedule.info.recentActions.length).toBeGreaterThan(0);
  // The namespace's launcher ConfigMap (no execution's, no owner) is left by the reconciler that ran meanwhile.
  const launcher = await kube.core.readNamespacedConfigMap({
    name: launcherConfigMapName(readLauncherSource()),
    namespace: 'durable-sandbox',
  });
  expect(launcher.data?.['launcher.py']).toBe(readLauncherSource());

  await w.client.cancelExecution(running);
  expect((await b.result()).status).toBe('cancelled');
  expect(await leftovers(kube, running)).toEqual(NOTHING_LEFT);
});

test("a terminated session's pod is deleted within the period; an open session's pod is untouched", async () => {
  const pods = (id: string) =>
    kube.core
      .listNamespacedPod({ namespace: 'durable-sandbox', labelSelector: sessionSelector(id) })
      .then((l) => l.items.map((p) => p.metadata!.name!));
  const gone = await w.client.openSession();
  const open = await w.client.openSession();
  try {
    await gone.run('x = 1');
    await open.run('x = 2');
    await w.client.temporal.workflow.getHandle(gone.id).terminate("test: terminate skips the session's own cleanup");
    expect(await pods(gone.id)).toHaveLength(1);
    await eventually(
      () => pods(gone.id),
      (p) => p.length === 0,
      (PERIOD + 45) * 1000,
    );
    expect(await pods(open.id)).toHaveLength(1);
    expect((await open.run('x')).stdout).toBe('2\n');
  } finally {
    await open.close();
  }
});

/**
 * Sessions on warm pool pods, on the real stack: a session's pod is a ready pod of its language's pool when one fits
 * (the same hardened sandbox, claimed by one conditional write that makes it the session's), so a session's first
 * run and a resume after idle skip the pod's start. The pool refills; close leaves nothing.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { SessionRunResult } from '../../client';
import { LABELS } from '../../core/names';
import { poolRef, poolSelector } from '../../core/pool';
import { readLauncherSource } from '../../worker/worker';
import {
  adminKube,
  eventually,
  poolHasReady,
  SANDBOX_NAMESPACE,
  sessionPods,
  startWorker,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();
let w: TestWorker;

beforeAll(async () => {
  w = await startWorker({ DS_WARM_POOL_SIZE: '1', DS_WARM_POOL_SIZE_JAVASCRIPT: '0' });
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const ok = (r: SessionRunResult) => {
  if (r.status !== 'succeeded') throw new Error(`run ${r.seq}: ${r.status} ${r.stderr} ${r.error?.message ?? ''}`);
  return r;
};

const readPod = (name: string): Promise<V1Pod> => kube.core.readNamespacedPod({ name, namespace: SANDBOX_NAMESPACE });

test("a session takes a ready pool pod, which becomes the session's; the pool refills; idle → resume on a warm pod", async () => {
  await poolHasReady(w, 'python');
  const pool = poolRef(w.config.temporal.taskQueue, 'python', w.config.policy, readLauncherSource());
  const session = await w.client.openSession({ idleTimeoutSeconds: 3, maxLifetimeSeconds: 600 });
  try {
    const first = ok(await session.run('import os\nx = 41\nos.makedirs("w", exist_ok=True)\nos.chdir("w")'));
    expect(first.session.pod).toMatch(/^ds-pool-python-/);
    expect(first.session.interpreter).toBe('started');
    const pod = await readPod(first.session.pod);
    // The session's now: its labels and owner, none of the pool's; its deadline the session's, not the pool's.
    expect(pod.metadata!.labels).toMatchObject({ [LABELS.sessionGeneration]: '1' });
    expect(pod.metadata!.labels).not.toHaveProperty(LABELS.pool);
    expect(pod.metadata!.annotations).toMatchObject({ 'durable-sandbox.dev/session-id': session.id });
    expect(pod.metadata!.annotations).not.toHaveProperty('durable-sandbox.dev/pool-owner');
    expect(pod.spec!.activeDeadlineSeconds).toBeLessThanOrEqual(600 + w.config.policy.startupAllowanceSeconds + 700);
    expect((await sessionPods(kube, session.id)).map((p) => p.metadata!.name)).toEqual([first.session.pod]);

    const second = ok(await session.run('x + 1, os.path.basename(os.getcwd())'));
    expect(second.stdout).toBe("(42, 'w')\n");
    expect(second.session).toMatchObject({ pod: first.session.pod, interpreter: 'kept' });

    // The pool refills (the claimed pod is no longer one of its own).
    const refilled = await eventually(
      () => kube.core.listNamespacedPod({ namespace: SANDBOX_NAMESPACE, labelSelector: poolSelector(pool, 'ready') }),
      (l) => l.items.some((p) => p.metadata!.name !== first.session.pod && p.status?.phase === 'Running'),
      90_000,
    );
    expect(refilled.items.map((p) => p.metadata!.name)).not.toContain(first.session.pod);

    // Idle: the pod goes; the next run resumes on a ready pool pod, its state put back there.
    await eventually(
      () => sessionPods(kube, session.id),
      (pods) => pods.length === 0,
      60_000,
    );
    await poolHasReady(w, 'python');
    const resumed = ok(await session.run('x + 2'));
    expect(resumed.stdout).toBe('43\n');
    expect(resumed.session.pod).toMatch(/^ds-pool-python-/);
    expect(resumed.session.pod).not.toBe(first.session.pod);
    expect(resumed.session.restored).toMatchObject({ runs: 0, warmPod: true, state: { names: expect.any(Number) } });
  } finally {
    await session.close();
  }
  expect(await sessionPods(kube, session.id)).toEqual([]);
});

test('a session whose limits the pool does not have gets a pod of its own', async () => {
  const session = await w.client.openSession({ limits: { memory: '300Mi' } });
  try {
    const r = ok(await session.run('1 + 1'));
    expect(r.session.pod).toMatch(/^ds-session-/);
    expect((await readPod(r.session.pod)).spec!.containers[0].resources?.limits?.memory).toBe('300Mi');
  } finally {
    await session.close();
  }
  expect(await sessionPods(kube, session.id)).toEqual([]);
});

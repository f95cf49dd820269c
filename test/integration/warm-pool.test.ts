/**
 * The warm pool on the real stack: executions take pre-started pods (claimed with one conditional write, handed
 * their task over pods/attach), each pod runs one program and is deleted, the pool refills itself, recycles idle
 * pods, and executions that do not fit (or find it empty) run cold without an error.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { AttemptSpec, RunResult } from '../../core/attempt';
import { LABELS, MANAGED_BY, resourceNames } from '../../core/names';
import { parseLauncherLog } from '../../core/output';
import { DEFAULT_LANGUAGE } from '../../core/languages';
import {
  buildPoolPod,
  claimPatch,
  POOL_IDLE_GRACE_SECONDS,
  POOL_SIGNALS,
  poolRef,
  poolSelector,
  poolWorkflowId,
  type PoolRef,
} from '../../core/pool';
import { validateInput } from '../../core/validate';
import { createKube } from '../../activities/kube';
import { claimWarmPod, deliverTask } from '../../activities/warm-sandbox';
import { loadConfig } from '../../worker/config';
import { loadKubeConfig } from '../../worker/connect';
import { readLauncherSource, readWorkspaceSource } from '../../worker/worker';
import { createActivities } from '../../activities';
import { MockActivityEnvironment } from '@temporalio/testing';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  adminKube,
  eventually,
  leftoversAfterCompletion,
  NOTHING_LEFT,
  SANDBOX_NAMESPACE,
  startWorker,
  uniqueId,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();
const launcherSource = readLauncherSource();

async function poolPods(pool: PoolRef): Promise<V1Pod[]> {
  return (await kube.core.listNamespacedPod({ namespace: SANDBOX_NAMESPACE, labelSelector: poolSelector(pool) })).items;
}
const readyNames = (pods: V1Pod[]) =>
  pods
    .filter(
      (p) =>
        p.metadata?.labels?.[LABELS.poolState] === 'ready' &&
        p.status?.phase === 'Running' &&
        !p.metadata.deletionTimestamp,
    )
    .map((p) => p.metadata!.name!)
    .sort();

describe('a worker with a pool of 2', () => {
  let w: TestWorker;
  let pool: PoolRef;
  beforeAll(async () => {
    w = await startWorker({ DS_WARM_POOL_SIZE: '2' });
    pool = poolRef(w.config.temporal.taskQueue, 'python', w.config.policy, launcherSource);
    await eventually(
      () => poolPods(pool),
      (p) => readyNames(p).length === 2,
      60_000,
    );
  });
  afterAll(async () => {
    await w?.stop();
    // Stopping a throwaway worker empties its pools.
    await eventually(
      () => poolPods(pool),
      (p) => p.length === 0,
      30_000,
    );
  });

  test('print(1) runs in a claimed pool pod, which is deleted after it; the pool refills', async () => {
    const before = readyNames(await poolPods(pool));
    const executionId = uniqueId('warm');
    const r = await w.client.executeCode({ code: 'import socket\nprint(socket.gethostname())' }, { executionId });
    expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, sandbox: 'warm' });
    expect(before).toContain(r.kubernetes.pod);
    expect(r.stdout).toBe(`${r.kubernetes.pod}\n`);
    expect(r.kubernetes.job).toBeUndefined();
    expect(r.timeline.map((e) => e.phase)).toEqual([
      'started',
      'claimed',
      'containerStarted',
      'containerFinished',
      'outputCollected',
    ]);
    expect(await leftoversAfterCompletion(kube, w.client, executionId)).toEqual(NOTHING_LEFT);
    // Single use: the pod that ran the program is gone, and the pool is back at its size with other pods.
    const after = await eventually(
      () => poolPods(pool),
      (p) => readyNames(p).length === 2,
      60_000,
    );
    expect(after.map((p) => p.metadata!.name)).not.toContain(r.kubernetes.pod);
  });

  test('a retried run step that finds the pod a dead try claimed still removes the ConfigMap an earlier cold try made', async () => {
    const executionId = uniqueId('retried');
    const spec: AttemptSpec = {
      executionId,
      attempt: 1,
      request: validateInput({ code: 'print("once")' }, w.config.policy),
      policy: w.config.policy,
    };
    const { name, executionLabel } = resourceNames(executionId, 1);
    // Try 1 found the pool empty, made the ConfigMap of a cold sandbox and died before its Job.
    await kube.core.createNamespacedConfigMap({
      namespace: SANDBOX_NAMESPACE,
      body: {
        metadata: { name, labels: { [LABELS.managedBy]: MANAGED_BY, [LABELS.execution]: executionLabel } },
        data: {},
      },
    });
    // Try 2 claimed a pool pod and died before it recorded which.
    expect(await claimWarmPod(w.worker.kube, pool, spec)).toMatchObject({ adopted: false });
    // Try 3 finds that pod, hands it the task and runs the program; nothing of the cold try may stay behind.
    const activities = createActivities({
      kube: w.worker.kube,
      policy: w.config.policy,
      launcherSource,
      workspaceSource: readWorkspaceSource(),
      pool: w.config.pool,
    });
    const env = new MockActivityEnvironment({ attempt: 3, taskQueue: w.config.temporal.taskQueue });
    try {
      const run: RunResult = await env.run(activities.runSandbox, spec);
      expect(run).toMatchObject({ sandbox: 'warm', end: { kind: 'finished', exitCode: 0 } });
      expect(run.output?.stdout.text).toBe('once\n');
      await expect(kube.core.readNamespacedConfigMap({ name, namespace: SANDBOX_NAMESPACE })).rejects.toMatchObject({
        code: 404,
      });
    } finally {
      // Whatever failed above, the test leaves nothing behind (its worker has no reconciler).
      await env.run(activities.cleanup, {
        executionId,
        attempt: 1,
        namespace: SANDBOX_NAMESPACE,
        sandbox: 'warm' as const,
      });
      await kube.core.deleteNamespacedConfigMap({ name, namespace: SANDBOX_NAMESPACE }).catch(() => undefined);
    }
    // The tries here were not the worker's, so nobody asked the pool to refill: ask, and wait, for the tests after.
    await w.temporal.workflow
      .getHandle(poolWorkflowId(w.config.temporal.taskQueue, 'python'))
      .signal(POOL_SIGNALS.replenish);
    await eventually(
      () => poolPods(pool),
      (p) => readyNames(p).length === 2,
      60_000,
    );
  });

  test('two executions in a row never share a pod', async () => {
    const a = await w.client.executeCode({ code: 'import socket\nprint(socket.gethostname())' });
    const b = await w.client.executeCode({ code: 'import socket\nprint(socket.gethostname())' });
    expect([a.sandbox, b.sandbox]).toEqual(['warm', 'warm']);
    expect(a.stdout).not.toBe(b.stdout);
  });

  test("limits other than the pool's take the cold path, with no error", async () => {
    const r = await w.client.executeCode({ code: 'print("big")', limits: { memory: '256Mi' } });
    expect(r).toMatchObject({ status: 'succeeded', stdout: 'big\n', sandbox: 'cold' });
    expect(r.kubernetes.job).toBeTruthy();
  });

  test('an exhausted pool falls back to cold: 4 at once with 2 ready, all succeed', async () => {
    await eventually(
      () => poolPods(pool),
      (p) => readyNames(p).length === 2,
      60_000,
    );
    const results = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        w.client.executeCode({ code: `print(${i})` }, { executionId: uniqueId(`burst-${i}`) }),
      ),
    );
    expect(results.map((r) => r.stdout)).toEqual(['0\n', '1\n', '2\n', '3\n']);
    const kinds = results.map((r) => r.sandbox).sort();
    expect(kinds.filter((k) => k === 'warm').length).toBeLessThanOrEqual(2);
    expect(kinds).toContain('cold');
    for (const r of results)
      expect(await leftoversAfterCompletion(kube, w.client, r.executionId)).toEqual(NOTHING_LEFT);
  });
});

/** An attempt of a claim test (its program is never run by a worker). */
const claimSpec = (executionId: string): AttemptSpec => ({
  executionId,
  attempt: 1,
  request: validateInput({ code: 'print("claimed")' }, validatePolicy()),
  policy: validatePolicy(),
});

/** A pool pod made by hand (no pool workflow keeps it): its name. */
async function podByHand(pool: PoolRef): Promise<string> {
  const body = buildPoolPod({
    pool,
    namespace: SANDBOX_NAMESPACE,
    policy: validatePolicy(),
    launcherSource,
    config: { size: 1, maxIdleSeconds: 300 },
    owner: 'test',
  });
  return (await kube.core.createNamespacedPod({ namespace: SANDBOX_NAMESPACE, body })).metadata!.name!;
}

describe('claims, on a pod made by hand', () => {
  const testPool = poolRef(uniqueId('claim-race'), 'python', validatePolicy(), launcherSource);
  let podName: string;

  beforeAll(async () => {
    podName = await podByHand(testPool);
    await eventually(
      () => kube.core.readNamespacedPod({ name: podName, namespace: SANDBOX_NAMESPACE }),
      (p) => p.status?.phase === 'Running',
      60_000,
    );
  });
  afterAll(async () => {
    await kube.core
      .deleteNamespacedPod({ name: podName, namespace: SANDBOX_NAMESPACE, gracePeriodSeconds: 0 })
      .catch(() => undefined);
  });

  test('two workers racing for the same pod: exactly one wins; a retried claim adopts its own', async () => {
    // Two clients, as two workers would have.
    const [k1, k2] = [1, 2].map(() => createKube(loadKubeConfig(process.env.KUBECONFIG)));
    const [a, b] = await Promise.all([
      claimWarmPod(k1, testPool, claimSpec('race-a')),
      claimWarmPod(k2, testPool, claimSpec('race-b')),
    ]);
    const winners = [a, b].filter((c) => c !== undefined);
    expect(winners).toHaveLength(1);
    expect(winners[0].pod.metadata!.name).toBe(podName);
    const winner = a ? 'race-a' : 'race-b';
    const again = await claimWarmPod(k1, testPool, claimSpec(winner));
    expect(again).toMatchObject({ adopted: true });
    expect(again!.pod.metadata!.name).toBe(podName);
    // A claim with a stale resourceVersion is refused by the apiserver itself.
    const stale = claimPatch(winners[0].pod, { ...claimSpec('race-c'), now: Date.now() }) as {
      metadata: { resourceVersion: string };
    };
    stale.metadata.resourceVersion = String(Number(stale.metadata.resourceVersion) - 1);
    await expect(
      k2.core.patchNamespacedPod(
        { name: podName, namespace: SANDBOX_NAMESPACE, body: stale },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    ).rejects.toMatchObject({ code: 409 });
  });

  test('two deliveries to the same pod run one program, once', async () => {
    const k = createKube(loadKubeConfig(process.env.KUBECONFIG));
    const first = await deliverTask(k, podName, {
      ...claimSpec('race-a'),
      request: validateInput({ code: 'print("first")' }, validatePolicy()),
    });
    await new Promise((r) => setTimeout(r, 1000));
    first.close();
    const second = await deliverTask(k, podName, {
      ...claimSpec('race-b'),
      request: validateInput({ code: 'print("second")' }, validatePolicy()),
    }).catch((e: unknown) => e);
    if (!(second instanceof Error)) (second as { close(): void }).close();
    const log = await eventually(
      () => kube.core.readNamespacedPodLog({ name: podName, namespace: SANDBOX_NAMESPACE }),
      (l) => /^x /m.test(l),
      30_000,
    );
    expect(log.match(/^a /gm)).toHaveLength(1);
    // print() can reach the pipe in pieces, so the log is read as the worker reads it.
    const { stdout } = parseLauncherLog(log, { stdoutCapBytes: 1024, stderrCapBytes: 1024 });
    expect(stdout.text).toBe('first\n');
  });
});

test('a pool recycles pods idle longer than its age, and stays at its size', async () => {
  const w = await startWorker({ DS_WARM_POOL_SIZE: '1', DS_WARM_POOL_MAX_IDLE_SECONDS: '10' });
  const pool = poolRef(w.config.temporal.taskQueue, 'python', w.config.policy, launcherSource);
  try {
    const [first] = readyNames(
      await eventually(
        () => poolPods(pool),
        (p) => readyNames(p).length === 1,
        60_000,
      ),
    );
    // Watch the pool while it recycles: never more than its size of pods that are not on their way out.
    let most = 0;
    await eventually(
      async () => {
        const pods = await poolPods(pool);
        most = Math.max(most, pods.filter((p) => !p.metadata?.deletionTimestamp).length);
        return pods;
      },
      (p) => readyNames(p).length === 1 && !readyNames(p).includes(first),
      60_000,
    );
    expect(most).toBe(1);
  } finally {
    await w.stop();
  }
});

function validatePolicy() {
  return loadConfig(process.env).policy;
}

test('a pool pod no pool serves any more ends itself after max idle + POOL_IDLE_GRACE_SECONDS: its CPU and memory are free', async () => {
  const body = buildPoolPod({
    pool: poolRef(uniqueId('gone-queue'), DEFAULT_LANGUAGE, validatePolicy(), launcherSource),
    namespace: SANDBOX_NAMESPACE,
    policy: validatePolicy(),
    launcherSource,
    config: { size: 1, maxIdleSeconds: 1 },
    owner: 'a-pool-nobody-runs',
  });
  const created = Date.now();
  const name = (await kube.core.createNamespacedPod({ namespace: SANDBOX_NAMESPACE, body })).metadata!.name!;
  try {
    const pod = await eventually(
      () => kube.core.readNamespacedPod({ name, namespace: SANDBOX_NAMESPACE }),
      (p) => p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed',
      (1 + POOL_IDLE_GRACE_SECONDS + 60) * 1000,
    );
    const took = (Date.now() - created) / 1000;
    expect(pod.status?.phase).toBe('Succeeded');
    const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
    expect(terminated?.exitCode).toBe(0);
    expect(terminated?.message).toBe(`idle: no task arrived within ${1 + POOL_IDLE_GRACE_SECONDS} s`);
    expect(took).toBeGreaterThanOrEqual(1 + POOL_IDLE_GRACE_SECONDS);
    console.log(`an orphaned pool pod (max idle 1 s) ended itself ${took.toFixed(0)} s after its creation`);
  } finally {
    await kube.core.deleteNamespacedPod({ name, namespace: SANDBOX_NAMESPACE, gracePeriodSeconds: 0 }).catch(() => {});
  }
});

describe("claims from two workers' pod caches", () => {
  const testPool = poolRef(uniqueId('cache-race'), 'python', validatePolicy(), launcherSource);
  // Two workers' clients: each its own connections and its own pod cache.
  const [k1, k2] = [1, 2].map(() => createKube(loadKubeConfig(process.env.KUBECONFIG), { shared: true }));
  let podName: string;

  beforeAll(async () => {
    podName = await podByHand(testPool);
    // Both caches see it ready before they race (a cache that has not seen it yet claims nothing).
    for (const k of [k1, k2])
      await eventually(
        async () => {
          const cache = k.pods!.for(SANDBOX_NAMESPACE);
          await cache.synced();
          return cache.get(podName);
        },
        (p) => p?.status?.phase === 'Running',
        60_000,
      );
  });
  afterAll(async () => {
    k1.close();
    k2.close();
    await kube.core
      .deleteNamespacedPod({ name: podName, namespace: SANDBOX_NAMESPACE, gracePeriodSeconds: 0 })
      .catch(() => undefined);
  });

  test('exactly one wins, a retried claim adopts its own from the cache, and no claim lists the pool', async () => {
    const opened = k1.connections!();
    const cacheRequests = k1.pods!.requests + k2.pods!.requests;
    const [a, b] = await Promise.all([
      claimWarmPod(k1, testPool, claimSpec('cache-race-a')),
      claimWarmPod(k2, testPool, claimSpec('cache-race-b')),
    ]);
    const winners = [a, b].filter((c) => c !== undefined);
    expect(winners).toHaveLength(1);
    expect(winners[0].pod.metadata!.name).toBe(podName);
    const [winner, k] = a ? ['cache-race-a', k1] : ['cache-race-b', k2];
    // The winner's cache learns of its claim from its watch; a retried claim then finds it there.
    await eventually(
      async () => k.pods!.for(SANDBOX_NAMESPACE).get(podName),
      (p) => p?.metadata?.labels?.[LABELS.poolState] === 'claimed',
      30_000,
    );
    const again = await claimWarmPod(k, testPool, claimSpec(winner));
    expect(again).toMatchObject({ adopted: true });
    // The loser's cache sees the pod claimed too: it is no longer a candidate.
    const loser = k === k1 ? k2 : k1;
    await eventually(
      async () => loser.pods!.for(SANDBOX_NAMESPACE).get(podName),
      (p) => p?.metadata?.labels?.[LABELS.poolState] === 'claimed',
      30_000,
    );
    expect(await claimWarmPod(loser, testPool, claimSpec('cache-race-c'))).toBeUndefined();
    // Neither listed nor watched anything for the claims, and k1's requests reused its connections.
    expect(k1.pods!.requests + k2.pods!.requests).toBe(cacheRequests);
    expect(k1.connections!() - opened).toBeLessThanOrEqual(1);
  });
});

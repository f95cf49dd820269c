/**
 * Captures what an attempt's watch sees and decides, from real attempts on the real stack, cold and warm, into
 * test/fixtures/watch/*.json: every decision of core/watch.ts with the facts it was made from. The unit tests of
 * core/watch.ts replay them (test/unit/watch.test.ts).
 * Usage: npm run capture:watch-sequences   (needs the stack: npm run stack:up)
 */
import { readLauncherSource } from '../worker/worker';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { AttemptSpec, RunResult } from '../core/attempt';
import { DEFAULT_LANGUAGE } from '../core/languages';
import { buildPoolPod, poolRef, poolSelector } from '../core/pool';
import { validateInput } from '../core/validate';
import type { WatchRecord } from '../activities/attempt-watch';
import type { ActivityDeps } from '../activities/deps';
import { createKube } from '../activities/kube';
import { runSandboxActivity } from '../activities/run-sandbox';
import { cleanupActivity } from '../activities/cleanup';
import { loadConfig } from '../worker/config';
import { loadKubeConfig } from '../worker/connect';
import { applyStackEnv, PROJECT_ROOT } from '../cli/local-stack';

interface Scenario {
  name: string;
  warm: boolean;
  code: string;
  timeoutSeconds?: number;
  memory?: string;
  /** Delete the pod once the program runs. */
  deletePod?: boolean;
}

const SCENARIOS: Scenario[] = [
  { name: 'cold-succeeded', warm: false, code: 'print(1)' },
  { name: 'cold-exit-3', warm: false, code: 'raise SystemExit(3)' },
  { name: 'cold-timed-out', warm: false, code: 'while True:\n    pass', timeoutSeconds: 2 },
  {
    name: 'cold-oom',
    warm: false,
    code: 'x = []\nwhile True:\n    x.append(bytearray(16 * 1024 * 1024))',
    memory: '64Mi',
  },
  { name: 'cold-pod-deleted', warm: false, code: 'import time\ntime.sleep(60)', deletePod: true },
  { name: 'warm-succeeded', warm: true, code: 'print(1)' },
  { name: 'warm-timed-out', warm: true, code: 'while True:\n    pass', timeoutSeconds: 2 },
  { name: 'warm-pod-deleted', warm: true, code: 'import time\ntime.sleep(60)', deletePod: true },
];

const OUT = path.join(PROJECT_ROOT, 'test', 'fixtures', 'watch');
const TASK_QUEUE = 'capture-watch';

/** What the decisions read of a pod (its metadata, node and status), without the rest of its spec. */
const strip = (pod: V1Pod | undefined): V1Pod | undefined =>
  pod && {
    metadata: { ...pod.metadata, managedFields: undefined, annotations: undefined },
    spec: { nodeName: pod.spec?.nodeName, containers: [] },
    status: pod.status,
  };

async function run(): Promise<void> {
  applyStackEnv();
  const config = loadConfig();
  const kube = createKube(loadKubeConfig(process.env.DS_ADMIN_KUBECONFIG ?? process.env.KUBECONFIG));
  const policy = config.policy;
  const namespace = policy.namespace;
  const launcherSource = readLauncherSource();
  mkdirSync(OUT, { recursive: true });
  const only = process.argv.slice(2);
  for (const s of SCENARIOS.filter((x) => only.length === 0 || only.includes(x.name))) {
    const records: WatchRecord[] = [];
    let deleting: Promise<unknown> | undefined;
    const deps: ActivityDeps = {
      kube,
      policy,
      launcherSource,
      workspaceSource: '',
      pool: { size: s.warm ? 1 : 0, maxIdleSeconds: 600 },
      recordWatch: (entry) => {
        const { pod: p, job: j } = entry.facts;
        const job = j && {
          metadata: { ...j.metadata, managedFields: undefined, annotations: undefined },
          status: j.status,
        };
        records.push(structuredClone({ ...entry, facts: { ...entry.facts, pod: strip(p), job } }));
        const pod = entry.facts.pod?.metadata?.name;
        const started = s.warm ? entry.facts.accepted : entry.facts.log === 'open';
        if (s.deletePod && !deleting && pod && started)
          deleting = kube.core.deleteNamespacedPod({ name: pod, namespace }).catch(() => undefined);
      },
    };
    if (s.warm) await readyPoolPod(deps);
    const executionId = `capture-watch-${s.name}-${Date.now()}`;
    const request = validateInput(
      { code: s.code, timeoutSeconds: s.timeoutSeconds ?? 60, limits: s.memory ? { memory: s.memory } : undefined },
      policy,
    );
    const spec: AttemptSpec = { executionId, attempt: 1, request, policy };
    try {
      const env = new MockActivityEnvironment({ taskQueue: TASK_QUEUE, attempt: 1 });
      const result: RunResult = await env.run(runSandboxActivity(deps), spec);
      if (result.sandbox !== (s.warm ? 'warm' : 'cold')) throw new Error(`${s.name}: ran ${result.sandbox}`);
      writeFileSync(
        path.join(OUT, `${s.name}.json`),
        `${JSON.stringify({ capturedAt: new Date().toISOString(), scenario: s, executionId, end: result.end, records }, null, 1)}\n`,
      );
      console.log(`captured ${s.name}: ${records.length} decisions, ${JSON.stringify(result.end)}`);
    } finally {
      await deleting;
      await new MockActivityEnvironment().run(cleanupActivity(deps), { executionId, attempt: 1, namespace });
      const pool = poolRef(TASK_QUEUE, DEFAULT_LANGUAGE, policy, launcherSource);
      await kube.core.deleteCollectionNamespacedPod({ namespace, labelSelector: poolSelector(pool) });
    }
  }
}

/** One ready pod in the capture's pool (the run step claims it like any pool pod). */
async function readyPoolPod(deps: ActivityDeps): Promise<void> {
  const pool = poolRef(TASK_QUEUE, DEFAULT_LANGUAGE, deps.policy, deps.launcherSource);
  const namespace = deps.policy.namespace;
  const body = buildPoolPod({
    pool,
    namespace,
    policy: deps.policy,
    launcherSource: deps.launcherSource,
    config: { size: 1, maxIdleSeconds: 600 },
    owner: 'capture-watch',
  });
  await deps.kube.core.createNamespacedPod({ namespace, body });
  const until = Date.now() + 90_000;
  while (Date.now() < until) {
    const list = await deps.kube.core.listNamespacedPod({ namespace, labelSelector: poolSelector(pool, 'ready') });
    if (list.items.some((p) => p.status?.phase === 'Running')) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error('the pool pod never ran');
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});

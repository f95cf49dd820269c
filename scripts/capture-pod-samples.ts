/**
 * Captures real Job and pod objects in the states the classifier must recognise, from the real stack, into
 * test/fixtures/pod-status/*.json (the unit tests of core/classify.ts read them).
 * Usage: npm run capture:pod-samples   (needs the stack: npm run stack:up)
 */
import { readLauncherSource } from '../worker/worker';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { createKube } from '../activities/kube';
import { buildJob, buildConfigMap } from '../core/manifests';
import { ensureLauncherConfigMap } from '../activities/launcher-configmap';
import { resourceNames } from '../core/names';
import { validateInput } from '../core/validate';
import { loadConfig } from '../worker/config';
import { loadKubeConfig } from '../worker/connect';
import { applyStackEnv, PROJECT_ROOT } from '../cli/local-stack';

interface Sample {
  name: string;
  code: string;
  timeoutSeconds?: number;
  memory?: string;
  edit?: (job: V1Job) => void;
  /** Called with each pod update; true when the pod is in the state to capture. */
  ready: (pod: V1Pod | undefined, job: V1Job) => boolean;
  /** Something to do to the pod once it runs (e.g. delete it). */
  act?: (podName: string) => Promise<void>;
}

const OUT = path.join(PROJECT_ROOT, 'test', 'fixtures', 'pod-status');
const cs = (p: V1Pod | undefined) => p?.status?.containerStatuses?.[0];

async function run(): Promise<void> {
  applyStackEnv();
  const config = loadConfig();
  const kube = createKube(loadKubeConfig(process.env.DS_ADMIN_KUBECONFIG ?? process.env.KUBECONFIG));
  const namespace = config.policy.namespace;
  const launcherSource = readLauncherSource();
  const samples: Sample[] = [
    { name: 'succeeded', code: 'print(1)', ready: (p) => !!cs(p)?.state?.terminated },
    { name: 'failed-exit-3', code: 'raise SystemExit(3)', ready: (p) => !!cs(p)?.state?.terminated },
    {
      name: 'oom-killed',
      code: 'x = []\nwhile True:\n    x.append(bytearray(16 * 1024 * 1024))',
      memory: '64Mi',
      ready: (p) => !!cs(p)?.state?.terminated,
    },
    { name: 'running', code: 'import time\ntime.sleep(60)', ready: (p) => !!cs(p)?.state?.running },
    {
      name: 'image-pull-failed',
      code: 'print(1)',
      edit: (j) => (j.spec!.template.spec!.containers[0].image = 'localhost/durable-sandbox/no-such-image:1'),
      ready: (p) => ['ErrImagePull', 'ImagePullBackOff'].includes(cs(p)?.state?.waiting?.reason ?? ''),
    },
    {
      name: 'unschedulable',
      code: 'print(1)',
      edit: (j) => (j.spec!.template.spec!.nodeSelector = { 'durable-sandbox.dev/no-such-node': 'true' }),
      ready: (p) =>
        p?.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.reason === 'Unschedulable') ?? false,
    },
    {
      name: 'deadline-exceeded',
      code: 'import time\ntime.sleep(60)',
      edit: (j) => (j.spec!.activeDeadlineSeconds = 3),
      ready: (_p, j) => j.status?.conditions?.some((c) => c.reason === 'DeadlineExceeded') ?? false,
    },
    {
      name: 'deleted-while-running',
      code: 'import time\ntime.sleep(60)',
      act: async (pod) => {
        await kube.core.deleteNamespacedPod({ name: pod, namespace });
      },
      ready: (p) => !!p?.metadata?.deletionTimestamp && !!cs(p)?.state?.terminated,
    },
  ];
  mkdirSync(OUT, { recursive: true });
  for (const s of samples) {
    const executionId = `capture-${s.name}-${Date.now()}`;
    const request = validateInput(
      { code: s.code, timeoutSeconds: s.timeoutSeconds ?? 60, limits: s.memory ? { memory: s.memory } : undefined },
      config.policy,
    );
    const spec = { executionId, attempt: 1, namespace, request, policy: config.policy, launcherSource };
    const job = buildJob(spec);
    s.edit?.(job);
    const { name, attemptSelector } = resourceNames(executionId, 1);
    await ensureLauncherConfigMap(kube, namespace, launcherSource);
    await kube.core.createNamespacedConfigMap({ namespace, body: buildConfigMap(spec) });
    await kube.batch.createNamespacedJob({ namespace, body: job });
    let acted = false;
    const deadline = Date.now() + 90_000;
    let lastPod: V1Pod | undefined;
    try {
      for (;;) {
        if (Date.now() > deadline) throw new Error(`sample ${s.name} never reached its state`);
        const j = await kube.batch.readNamespacedJob({ name, namespace });
        const pods = (await kube.core.listNamespacedPod({ namespace, labelSelector: attemptSelector })).items;
        const pod = pods[0] ?? lastPod;
        lastPod = pods[0] ?? lastPod;
        if (s.act && !acted && pod && cs(pod)?.state?.running) {
          await s.act(pod.metadata!.name!);
          acted = true;
        }
        if (s.ready(pods[0] ?? (s.name === 'deadline-exceeded' ? lastPod : undefined), j)) {
          const strip = <T extends { metadata?: { managedFields?: unknown } }>(o: T | undefined): T | undefined =>
            o && { ...o, metadata: { ...o.metadata, managedFields: undefined } };
          writeFileSync(
            path.join(OUT, `${s.name}.json`),
            `${JSON.stringify({ capturedAt: new Date().toISOString(), job: strip(j), pod: strip(pod) }, null, 2)}\n`,
          );
          console.log(`captured ${s.name}`);
          break;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      await kube.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }).catch(() => undefined);
      await kube.core.deleteNamespacedConfigMap({ name, namespace }).catch(() => undefined);
    }
  }
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});

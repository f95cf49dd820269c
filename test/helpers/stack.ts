/**
 * What integration tests share: connections to the real stack (the local one from scripts/stack/up.sh, or the
 * cluster and Temporal named by KUBECONFIG / TEMPORAL_ADDRESS), a worker running this project's code on a task
 * queue of the test's own, and checks that nothing was left behind.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Watch, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { createKube, type Kube } from '../../activities/kube';
import type { SandboxClient } from '../../client';
import { LABELS, MANAGED_BY, resourceNames } from '../../core/names';
import { claimable, poolRef, poolSelector } from '../../core/pool';
import { sessionSelector } from '../../core/session';
import type { Language } from '../../core/types';
import { readLauncherSource } from '../../worker/worker';
import { loadKubeConfig } from '../../worker/connect';
import { applyStackEnv, PROJECT_ROOT } from '../../cli/local-stack';
import { WorkerSupervisor } from '../../scripts/chaos/supervisor';
import { loadConfig, type WorkerConfig } from '../../worker/config';
import { startInProcessWorker, type InProcessWorker } from '../../worker/in-process';
import { telemetryOptions } from '../../worker/telemetry';
import type { Tracing } from '../../worker/tracing';

applyStackEnv();

let runtimeInstalled = false;
function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  // A test that reads metrics sets DS_METRICS_ADDRESS before its first worker (one Runtime per test file).
  const telemetry = telemetryOptions(process.env.DS_METRICS_ADDRESS);
  Runtime.install({ logger: new DefaultLogger('WARN'), ...(telemetry ? { telemetryOptions: telemetry } : {}) });
}

/** Kubernetes with admin rights, for the tests' own checks (the worker uses its ServiceAccount's credentials). */
export function adminKube(): Kube {
  return createKube(loadKubeConfig(process.env.DS_ADMIN_KUBECONFIG ?? process.env.KUBECONFIG));
}

export const SANDBOX_NAMESPACE = process.env.DS_SANDBOX_NAMESPACE ?? 'durable-sandbox';

export type TestWorker = InProcessWorker;

/** Starts the real worker (this project's workflows and activities) on a fresh task queue. */
export async function startWorker(
  env: Record<string, string> = {},
  options: { tracing?: Tracing } = {},
): Promise<TestWorker> {
  quietRuntime();
  const taskQueue = `test-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;
  // The reconciler's Schedule is off unless a test asks for it.
  return startInProcessWorker(
    { ...process.env, DS_TASK_QUEUE: taskQueue, DS_RECONCILE_INTERVAL_SECONDS: '0', DS_WARM_POOL_SIZE: '0', ...env },
    { ephemeral: true, settleOnStop: true, ...options },
  );
}

export interface Leftovers {
  jobs: string[];
  pods: string[];
  configMaps: string[];
}

/** Every Job, Pod and ConfigMap of an execution still in the cluster. */
export async function leftovers(kube: Kube, executionId: string): Promise<Leftovers> {
  const labelSelector = resourceNames(executionId, 1).executionSelector;
  const namespace = SANDBOX_NAMESPACE;
  const [jobs, pods, cms] = await Promise.all([
    kube.batch.listNamespacedJob({ namespace, labelSelector }),
    kube.core.listNamespacedPod({ namespace, labelSelector }),
    kube.core.listNamespacedConfigMap({ namespace, labelSelector }),
  ]);
  const names = (l: { items: { metadata?: { name?: string } }[] }) => l.items.map((i) => i.metadata!.name!);
  return { jobs: names(jobs), pods: names(pods), configMaps: names(cms) };
}

/** The pods of a session (any generation), by its label. */
export async function sessionPods(kube: Kube, sessionId: string): Promise<V1Pod[]> {
  return (
    await kube.core.listNamespacedPod({ namespace: SANDBOX_NAMESPACE, labelSelector: sessionSelector(sessionId) })
  ).items;
}

/** Deletes a session's pod from outside (as a node's loss would) and waits until none of the session's pods is left. */
export async function deleteSessionPod(kube: Kube, sessionId: string, pod: string): Promise<void> {
  await kube.core.deleteNamespacedPod({ name: pod, namespace: SANDBOX_NAMESPACE, gracePeriodSeconds: 0 });
  await eventually(
    () => sessionPods(kube, sessionId),
    (pods) => pods.length === 0,
    60_000,
  );
}

export const NOTHING_LEFT: Leftovers = { jobs: [], pods: [], configMaps: [] };

/**
 * What is left of an execution once it has completed. executeCode answers before cleanup; the workflow completes
 * only after it, so this waits for the completion and then looks.
 */
export async function leftoversAfterCompletion(
  kube: Kube,
  client: SandboxClient,
  executionId: string,
): Promise<Leftovers> {
  await client
    .handle(executionId)
    .result()
    .catch(() => undefined);
  return leftovers(kube, executionId);
}

/**
 * Records every Job the project creates, from a watch kept for the whole test file: how many distinct Jobs
 * (by uid) each execution got.
 */
export class JobRecorder {
  private readonly uids = new Map<string, Set<string>>();
  private abort?: AbortController;

  async start(kube: Kube): Promise<void> {
    const list = await kube.batch.listNamespacedJob({
      namespace: SANDBOX_NAMESPACE,
      labelSelector: `${LABELS.managedBy}=${MANAGED_BY}`,
    });
    list.items.forEach((j) => this.add(j));
    this.abort = await new Watch(kube.config).watch(
      `/apis/batch/v1/namespaces/${SANDBOX_NAMESPACE}/jobs`,
      { labelSelector: `${LABELS.managedBy}=${MANAGED_BY}`, resourceVersion: list.metadata?.resourceVersion },
      (type: string, job: V1Job) => {
        if (type === 'ADDED') this.add(job);
      },
      () => undefined,
    );
  }

  private add(job: V1Job): void {
    const label = job.metadata?.labels?.[LABELS.execution];
    if (!label) return;
    const set = this.uids.get(label) ?? new Set<string>();
    set.add(job.metadata!.uid!);
    this.uids.set(label, set);
  }

  jobsFor(executionId: string): number {
    return this.uids.get(resourceNames(executionId, 1).executionLabel)?.size ?? 0;
  }

  stop(): void {
    this.abort?.abort();
  }
}

export function uniqueId(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
}

/** Polls until `ok` holds and returns that value; throws (with the last value seen) when time runs out. */
export async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() - start > timeoutMs) {
      throw new Error(`condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(v)?.slice(0, 500)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Waits until the sandbox container of an execution's attempt is running, as the cluster itself reports it. */
export async function whenRunning(kube: Kube, executionId: string, attempt = 1, timeoutMs = 60_000): Promise<string> {
  const pods = await eventually(
    () =>
      kube.core.listNamespacedPod({
        namespace: SANDBOX_NAMESPACE,
        labelSelector: resourceNames(executionId, attempt).attemptSelector,
      }),
    (l) => l.items.some((p) => p.status?.containerStatuses?.some((c) => c.state?.running)),
    timeoutMs,
  );
  return pods.items.find((p) => p.status?.containerStatuses?.some((c) => c.state?.running))!.metadata!.name!;
}

/** Waits until the worker's pool for `language` has a ready pod (so the next execution can run warm). */
export async function poolHasReady(w: TestWorker, language: Language, timeoutMs = 60_000, count = 1): Promise<void> {
  const pool = poolRef(w.config.temporal.taskQueue, language, w.config.policy, readLauncherSource());
  await eventually(
    () =>
      adminKube().core.listNamespacedPod({ namespace: SANDBOX_NAMESPACE, labelSelector: poolSelector(pool, 'ready') }),
    (l) => l.items.filter((p) => claimable(p, pool)).length >= count,
    timeoutMs,
  );
}

/**
 * The real worker as a child process on a task queue of its own (no pool, no reconciler Schedule), under a supervisor
 * that can SIGKILL it and restarts it: for tests of what a crash leaves. Started; its log goes to .stack/logs.
 */
export function killableWorker(prefix: string): {
  taskQueue: string;
  config: WorkerConfig;
  supervisor: WorkerSupervisor;
} {
  const taskQueue = uniqueId(prefix);
  const env = {
    ...process.env,
    DS_TASK_QUEUE: taskQueue,
    DS_RECONCILE_INTERVAL_SECONDS: '0',
    DS_WARM_POOL_SIZE: '0',
    DS_LOG_LEVEL: 'WARN',
  };
  const logs = path.join(PROJECT_ROOT, '.stack', 'logs');
  mkdirSync(logs, { recursive: true });
  const supervisor = new WorkerSupervisor(env, path.join(logs, `${taskQueue}-worker.log`));
  supervisor.start();
  return { taskQueue, config: loadConfig(env), supervisor };
}

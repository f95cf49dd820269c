/**
 * The floor: the least a direct client has to do to run one program in the same hardened Job, with no Temporal.
 * Same manifests (core/manifests.ts), same policy, image and namespace, admin credentials. Create the ConfigMap and
 * the Job, watch the pod until its container has terminated, read the log (same byte limit, parsed by
 * core/output.ts), delete the Job (Background) and the ConfigMap, and wait on the same watch until the pod is gone.
 */
import { Watch, type V1Pod } from '@kubernetes/client-node';
import type { Kube } from '../../activities/kube';
import { buildConfigMap, buildJob, CONTAINER_NAME } from '../../core/manifests';
import { ensureLauncherConfigMap } from '../../activities/launcher-configmap';
import { resourceNames } from '../../core/names';
import { capsOf, logReadLimit, parseLauncherLog, type LauncherTrailer } from '../../core/output';
import type { ExecutionPolicy } from '../../core/policy';
import type { PhaseName } from '../../core/types';
import { validateInput } from '../../core/validate';
import type { RunRecord } from './types';
import type { Workload } from './workloads';

export interface FloorDeps {
  kube: Kube;
  policy: ExecutionPolicy;
  launcherSource: string;
  /** Set when the bench is interrupted: no new objects are created. */
  aborted: () => boolean;
}

/** Longest a floor execution may take before it is called failed (and cleaned up). */
const FLOOR_TIMEOUT_MS = 180_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The program's run time by the launcher's clock, as the result's durationMs is (core/result.ts). */
export function durationOf(t: LauncherTrailer | null): number | undefined {
  return t && t.startedAt > 0 && t.finishedAt >= t.startedAt ? t.finishedAt - t.startedAt : undefined;
}

export async function runFloor(deps: FloorDeps, w: Workload, executionId: string): Promise<RunRecord> {
  const { kube, policy, launcherSource } = deps;
  const namespace = policy.namespace;
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const phases: Partial<Record<PhaseName, number>> = {};
  const mark = (p: PhaseName, at = Date.now()) => (phases[p] ??= at);
  const { name, attemptSelector } = resourceNames(executionId, 1);
  const record = (extra: Partial<RunRecord>): RunRecord => {
    const cpu = process.cpuUsage(cpu0);
    const t1 = Date.now();
    return {
      side: 'floor',
      workload: w.key,
      executionId,
      resourceName: name,
      ok: false,
      status: 'failed',
      exitCode: null,
      attempts: 1,
      t0,
      t1,
      latencyMs: t1 - t0,
      phases,
      stdoutTotalBytes: 0,
      stdoutCapturedBytes: 0,
      cpuUserMs: cpu.user / 1000,
      cpuSystemMs: cpu.system / 1000,
      ...extra,
    };
  };

  let watch: AbortController | undefined;
  let pod: V1Pod | undefined;
  let podSeen = false;
  let podGone = false;
  let wake = () => undefined as void;
  const changed = () => wake();
  const waitFor = async (cond: () => boolean, what: string): Promise<void> => {
    while (!cond()) {
      if (Date.now() - t0 > FLOOR_TIMEOUT_MS) throw new Error(`timed out waiting for ${what}`);
      if (deps.aborted()) throw new Error('interrupted');
      if (!watch) await startWatch();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  };
  let watches = 0;
  const startWatch = async (): Promise<void> => {
    // First watch: no resourceVersion, so it starts with the current state of the pods and misses nothing. A
    // watch that broke is resumed after a list (rare), so a pod deleted meanwhile is noticed.
    let resourceVersion: string | undefined;
    if (watches++ > 0) {
      const list = await kube.core.listNamespacedPod({ namespace, labelSelector: attemptSelector });
      if (podSeen && list.items.length === 0) podGone = true;
      if (list.items[0]) pod = list.items[0];
      resourceVersion = list.metadata?.resourceVersion;
    }
    watch = await new Watch(kube.config).watch(
      `/api/v1/namespaces/${namespace}/pods`,
      { labelSelector: attemptSelector, ...(resourceVersion ? { resourceVersion } : {}) },
      (type: string, obj: V1Pod) => {
        const now = Date.now();
        if (type === 'DELETED') {
          if (podSeen) podGone = true;
        } else if (type === 'ADDED' || type === 'MODIFIED') {
          pod = obj;
          podSeen = true;
          if (obj.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'True'))
            mark('podScheduled', now);
          const cs = obj.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
          if (cs?.state?.running || cs?.state?.terminated) mark('containerStarted', now);
          if (cs?.state?.terminated) mark('containerFinished', now);
        }
        changed();
      },
      () => {
        watch = undefined;
        changed();
      },
    );
  };

  try {
    if (deps.aborted()) throw new Error('interrupted');
    const request = validateInput(w.input, policy);
    const spec = { executionId, attempt: 1, namespace, request, policy, launcherSource };
    mark('started');
    await ensureLauncherConfigMap(kube, namespace, launcherSource);
    await kube.core.createNamespacedConfigMap({ namespace, body: buildConfigMap(spec) });
    await kube.batch.createNamespacedJob({ namespace, body: buildJob(spec) });
    mark('jobCreated');
    await startWatch();
    const terminated = () => pod?.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME)?.state?.terminated;
    await waitFor(() => !!terminated() || podGone, 'the container to finish');
    const exitCode = terminated()?.exitCode ?? null;
    const caps = capsOf(policy);
    const limit = logReadLimit(caps);
    const log = await kube.core.readNamespacedPodLog({
      name: pod!.metadata!.name!,
      namespace,
      container: CONTAINER_NAME,
      limitBytes: limit,
    });
    const parsed = parseLauncherLog(log, caps, Buffer.byteLength(log, 'utf8') < limit);
    mark('outputCollected');
    // The launcher's own clock times the program, as in the workflow's timeline.
    if (parsed.trailer?.startedAt) phases.containerStarted = parsed.trailer.startedAt;
    if (parsed.trailer?.finishedAt) phases.containerFinished = parsed.trailer.finishedAt;
    await cleanup(deps, name);
    await waitFor(() => podGone, 'the pod to go');
    mark('cleanedUp');
    const ok = exitCode === 0 && w.check(parsed.stdout.text, parsed.stdout.totalBytes);
    return record({
      ok,
      status: exitCode === 0 ? 'succeeded' : 'failed',
      exitCode,
      ...(ok ? {} : { error: `unexpected output (${parsed.stdout.totalBytes} bytes)` }),
      durationMs: durationOf(parsed.trailer),
      stdoutTotalBytes: parsed.stdout.totalBytes,
      stdoutCapturedBytes: parsed.stdout.capturedBytes,
    });
  } catch (err) {
    await cleanup(deps, name).catch(() => undefined);
    return record({ error: err instanceof Error ? err.message : String(err) });
  } finally {
    watch?.abort();
  }
}

async function cleanup(deps: FloorDeps, name: string): Promise<void> {
  const namespace = deps.policy.namespace;
  const notFound = (err: unknown) => {
    if ((err as { code?: number }).code !== 404) throw err;
  };
  for (let i = 0; ; i++) {
    try {
      await deps.kube.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }).catch(notFound);
      await deps.kube.core.deleteNamespacedConfigMap({ name, namespace }).catch(notFound);
      return;
    } catch (err) {
      if (i >= 5) throw err;
      await sleep(500 * (i + 1));
    }
  }
}

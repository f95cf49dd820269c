/**
 * The fast floor: the fastest correct direct client for the same program in the same hardened Job, with no Temporal.
 * Create the ConfigMap and the Job, watch the pod, follow the container's log from the moment it can be read, return
 * as soon as the launcher's trailer arrives (the kubelet's status when the program died without one), and delete
 * the objects in the background. `background` settles once the pod is gone; the bench waits for it before the next
 * measurement, so each side runs alone.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { AttemptPods } from '../../activities/attempt-pods';
import { openLogStream, type LogStream } from '../../activities/log-stream';
import { buildConfigMap, buildJob, CONTAINER_NAME } from '../../core/manifests';
import { ensureLauncherConfigMap } from '../../activities/launcher-configmap';
import { resourceNames } from '../../core/names';
import { capsOf, LauncherLogParser, logReadLimit } from '../../core/output';
import type { PhaseName } from '../../core/types';
import { validateInput } from '../../core/validate';
import { durationOf, type FloorDeps } from './floor';
import type { RunRecord } from './types';
import type { Workload } from './workloads';

const TIMEOUT_MS = 180_000;

export interface FastFloorRun {
  record: RunRecord;
  /** Deletion of the objects and the wait until the pod is gone. */
  background: Promise<void>;
}

const container = (pod: V1Pod | undefined) => pod?.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);

export async function runFastFloor(deps: FloorDeps, w: Workload, executionId: string): Promise<FastFloorRun> {
  const { kube, policy, launcherSource } = deps;
  const namespace = policy.namespace;
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const phases: Partial<Record<PhaseName, number>> = {};
  const mark = (p: PhaseName, at = Date.now()) => (phases[p] ??= at);
  const { name, attemptSelector } = resourceNames(executionId, 1);
  const caps = capsOf(policy);
  const parser = new LauncherLogParser(caps);
  const pods = new AttemptPods(kube, namespace, attemptSelector);
  let log: LogStream | undefined;
  let logEnded = false;
  const record = (extra: Partial<RunRecord>): RunRecord => {
    const cpu = process.cpuUsage(cpu0);
    const t1 = Date.now();
    return {
      side: 'fast',
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
  const remove = async (): Promise<void> => {
    await kube.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' }).catch(() => undefined);
    await kube.core.deleteNamespacedConfigMap({ name, namespace }).catch(() => undefined);
    const gone = new AttemptPods(kube, namespace, attemptSelector);
    await gone.start(true);
    const until = Date.now() + 60_000;
    while (gone.all.length > 0 && Date.now() < until) await gone.changed(1000);
    mark('cleanedUp');
    gone.stop();
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
    await pods.start(false);
    for (;;) {
      if (Date.now() - t0 > TIMEOUT_MS) throw new Error('timed out waiting for the trailer');
      if (deps.aborted()) throw new Error('interrupted');
      if (!pods.isWatching) await pods.start(true);
      const pod = pods.pod;
      if (pod?.status?.conditions?.some((c) => c.type === 'PodScheduled' && c.status === 'True')) mark('podScheduled');
      const cs = container(pod);
      if (!log && (cs?.state?.running || cs?.state?.terminated)) {
        log = await openLogStream(
          kube,
          {
            namespace,
            pod: pod!.metadata!.name!,
            container: CONTAINER_NAME,
            limitBytes: logReadLimit(caps),
            follow: true,
          },
          (piece) => {
            parser.push(piece);
            pods.poke();
          },
        ).catch(() => undefined);
        void log?.done.then(() => {
          logEnded = true;
          pods.poke();
        });
      }
      const t = parser.trailer;
      const settled = t && !t.terminated && (t.signal === null || t.timedOut);
      if (settled || (cs?.state?.terminated && logEnded) || pods.gone) break;
      await pods.changed(1000);
    }
    const out = parser.result();
    mark('outputCollected');
    if (out.trailer?.startedAt) phases.containerStarted = out.trailer.startedAt;
    if (out.trailer?.finishedAt) phases.containerFinished = out.trailer.finishedAt;
    const exitCode = out.trailer?.exitCode ?? container(pods.pod)?.state?.terminated?.exitCode ?? null;
    const ok = exitCode === 0 && w.check(out.stdout.text, out.stdout.totalBytes);
    return {
      record: record({
        ok,
        status: exitCode === 0 ? 'succeeded' : 'failed',
        exitCode,
        ...(ok ? {} : { error: `unexpected output (${out.stdout.totalBytes} bytes)` }),
        durationMs: durationOf(out.trailer),
        stdoutTotalBytes: out.stdout.totalBytes,
        stdoutCapturedBytes: out.stdout.capturedBytes,
      }),
      background: remove(),
    };
  } catch (err) {
    return { record: record({ error: err instanceof Error ? err.message : String(err) }), background: remove() };
  } finally {
    pods.stop();
    log?.abort();
  }
}

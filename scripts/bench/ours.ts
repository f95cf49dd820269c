/**
 * Ours: the same programs through SandboxClient.executeCode, with the real worker (this project's workflows and
 * activities, as in test/helpers/stack.ts startWorker) running in this process on a task queue of its own.
 */
import type { Client } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import type { SandboxClient } from '../../client';
import type { Kube } from '../../activities/kube';
import { resourceNames } from '../../core/names';
import { claimable, poolRef, poolSelector } from '../../core/pool';
import type { PhaseName } from '../../core/types';
import type { WorkerConfig } from '../../worker/config';
import { startInProcessWorker, workflowBundle } from '../../worker/in-process';
import type { RunRecord } from './types';
import type { Workload } from './workloads';
import { DEFAULT_LANGUAGE } from '../../core/languages';

export { workflowBundle };

export interface BenchWorker {
  config: WorkerConfig;
  client: SandboxClient;
  temporal: Client;
  /** The worker's Kubernetes clients (its shared connections and pod cache). */
  kube: Kube;
  /** Stops the worker (the client stays usable). */
  stop(): Promise<void>;
  /** Stops the worker and closes the client. */
  close(): Promise<void>;
}

/** Starts the real worker with `env` on top of the process environment, and a client bound to its task queue. */
export async function startBenchWorker(env: Record<string, string> = {}): Promise<BenchWorker> {
  const taskQueue = `bench-${process.pid}-${Date.now().toString(36)}`;
  // No reconciler Schedule for a bench worker: it would outlive the bench on a task queue nobody polls.
  const w = await startInProcessWorker(
    { ...process.env, DS_TASK_QUEUE: taskQueue, DS_RECONCILE_INTERVAL_SECONDS: '0', DS_WARM_POOL_SIZE: '0', ...env },
    { ephemeral: true },
  );
  return {
    config: w.config,
    client: w.client,
    temporal: w.temporal,
    kube: w.worker.kube,
    stop: w.stopWorker,
    close: w.stop,
  };
}

/** Longest one execution of ours may take before the bench calls it failed. */
const OURS_TIMEOUT_MS = 300_000;

export interface OursRun {
  record: RunRecord;
  /** The execution's cleanup after the result: settles when the workflow has completed (cleanedUp recorded). */
  background: Promise<void>;
}

export async function runOurs(
  w: BenchWorker,
  wl: Workload,
  executionId: string,
  side: 'ours' | 'warm' = 'ours',
): Promise<OursRun> {
  const record = await runOursRecord(w, wl, executionId);
  record.side = side;
  // The warm side measures warm runs only: one that found the pool empty says so.
  if (side === 'warm' && record.ok && record.sandbox !== 'warm')
    Object.assign(record, { ok: false, error: 'ran cold (the pool had no ready pod)' });
  const background = (async () => {
    const handle = w.temporal.workflow.getHandle(executionId);
    await handle.result().catch(() => undefined);
    const timeline = await w.client.timeline(executionId).catch(() => []);
    const cleaned = timeline.filter((e) => e.phase === 'cleanedUp' && e.attempt === (record.attempts || 1)).pop();
    if (cleaned) record.phases.cleanedUp = cleaned.at;
  })();
  return { record, background };
}

async function runOursRecord(w: BenchWorker, wl: Workload, executionId: string): Promise<RunRecord> {
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  const base = {
    side: 'ours' as const,
    workload: wl.key,
    executionId,
    resourceName: resourceNames(executionId, 1).name,
  };
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = await Promise.race([
      w.client.executeCode(wl.input, { executionId }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no result after ${OURS_TIMEOUT_MS / 1000} s`)), OURS_TIMEOUT_MS);
      }),
    ]);
    const t1 = Date.now();
    const cpu = process.cpuUsage(cpu0);
    const phases: Partial<Record<PhaseName, number>> = {};
    // The last attempt's phases ('started' belongs to attempt 1: the workflow's start).
    for (const e of result.timeline) if (e.attempt === result.attempts || e.phase === 'started') phases[e.phase] = e.at;
    // A warm attempt's claim stands where a cold one creates its Job.
    if (phases.claimed !== undefined) phases.jobCreated = phases.podScheduled = phases.claimed;
    const ok = result.status === 'succeeded' && wl.check(result.stdout, result.stdoutInfo.totalBytes);
    return {
      ...base,
      resourceName: resourceNames(executionId, result.attempts).name,
      ok,
      status: result.status,
      sandbox: result.sandbox,
      ...(result.kubernetes?.pod ? { pod: result.kubernetes.pod } : {}),
      exitCode: result.exitCode,
      ...(ok ? {} : { error: result.error ? `${result.error.reason}: ${result.error.message}` : `unexpected output` }),
      attempts: result.attempts,
      t0,
      t1,
      latencyMs: t1 - t0,
      phases,
      durationMs: result.durationMs,
      stdoutTotalBytes: result.stdoutInfo.totalBytes,
      stdoutCapturedBytes: result.stdoutInfo.capturedBytes,
      cpuUserMs: cpu.user / 1000,
      cpuSystemMs: cpu.system / 1000,
    };
  } catch (err) {
    const t1 = Date.now();
    const cpu = process.cpuUsage(cpu0);
    // Given up on: stop it, so it makes nothing more (the bench's sweep deletes what it made).
    await w.temporal.workflow
      .getHandle(executionId)
      .terminate('bench gave up waiting')
      .catch(() => undefined);
    return {
      ...base,
      ok: false,
      status: 'error',
      exitCode: null,
      error: err instanceof Error ? err.message : String(err),
      attempts: 0,
      t0,
      t1,
      latencyMs: t1 - t0,
      phases: {},
      stdoutTotalBytes: 0,
      stdoutCapturedBytes: 0,
      cpuUserMs: cpu.user / 1000,
      cpuSystemMs: cpu.system / 1000,
    };
  } finally {
    clearTimeout(timer);
  }
}

export interface HistoryCost {
  events: number;
  /** Size of the history as the server sends it: temporal.api.history.v1.History, protobuf-encoded. */
  bytes: number;
  /** Events by type, e.g. ACTIVITY_TASK_SCHEDULED. */
  byType: Record<string, number>;
}

export async function historyCost(client: Client, executionId: string): Promise<HistoryCost> {
  const history = await client.workflow.getHandle(executionId).fetchHistory();
  const events = history.events ?? [];
  const byType: Record<string, number> = {};
  for (const e of events) {
    const t = temporal.api.enums.v1.EventType[e.eventType ?? 0] ?? String(e.eventType);
    const key = String(t).replace(/^EVENT_TYPE_/, '');
    byType[key] = (byType[key] ?? 0) + 1;
  }
  return { events: events.length, bytes: temporal.api.history.v1.History.encode(history).finish().length, byType };
}

/** Waits until the worker's python pool has `n` ready pods (the warm side measures warm runs). */
export async function poolReady(
  w: BenchWorker,
  kube: Kube,
  launcherSource: string,
  n: number,
  timeoutMs = 120_000,
): Promise<number> {
  const pool = poolRef(w.config.temporal.taskQueue, DEFAULT_LANGUAGE, w.config.policy, launcherSource);
  const until = Date.now() + timeoutMs;
  for (;;) {
    const pods = await kube.core.listNamespacedPod({
      namespace: w.config.policy.namespace,
      labelSelector: poolSelector(pool, 'ready'),
    });
    const ready = pods.items.filter((p) => claimable(p, pool)).length;
    if (ready >= n || Date.now() > until) return ready;
    await new Promise((r) => setTimeout(r, 250));
  }
}

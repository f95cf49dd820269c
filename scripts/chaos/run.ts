/**
 * The chaos harness: runs executions through the real client against the local stack while it kills the worker
 * (at random moments and at chosen points), restarts the Temporal server, takes the apiserver away and deletes
 * sandbox pods; then checks every execution: a result was delivered, it is the result the program gives without
 * faults (or a typed status), each attempt made at most one Job and one pod, and nothing is left behind.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { KubernetesObject, V1Pod } from '@kubernetes/client-node';
import { WorkflowFailedError } from '@temporalio/client';
import { SandboxClient, type ExecutionResult } from '../../client';
import { createKube, type Kube } from '../../activities/kube';
import { LANGUAGES } from '../../core/languages';
import { LABELS, resourceNames } from '../../core/names';
import { claimable, poolRef, poolSelector } from '../../core/pool';
import type { Language } from '../../core/types';
import { loadConfig } from '../../worker/config';
import { loadKubeConfig } from '../../worker/connect';
import { applyStackEnv, PROJECT_ROOT } from '../../cli/local-stack';
import { drainWarmPools } from '../../worker/warm-pools';
import { readLauncherSource } from '../../worker/worker';
import { killComponent, stackUp } from './faults';
import { ClusterObserver } from './observer';
import { WorkerSupervisor } from './supervisor';
import { seededRandom } from '../seeded';

export interface ChaosOptions {
  executions: number;
  concurrency: number;
  /** Mean time between random worker kills (0: none). */
  killEveryMs: number;
  /** Also kill the worker right after a Job is created, when a pod finishes and while a Job is being deleted. */
  targetedKills: boolean;
  temporalRestarts: number;
  apiserverOutages: number;
  apiserverDownMs: number;
  podDeletions: number;
  /** Warm pool size per language for the worker (0: no pool, every execution cold). */
  warmPool: number;
  /** A result not delivered within this long counts as lost. */
  resultTimeoutMs: number;
  /** How long after the last result objects may still be going away. */
  leakWindowMs: number;
  seed: number;
  log: (line: string) => void;
}

export const DEFAULT_CHAOS: ChaosOptions = {
  executions: 20,
  concurrency: 5,
  killEveryMs: 8000,
  targetedKills: true,
  temporalRestarts: 1,
  apiserverOutages: 1,
  apiserverDownMs: 5000,
  podDeletions: 2,
  warmPool: 0,
  resultTimeoutMs: 300_000,
  leakWindowMs: 60_000,
  seed: 1,
  log: (line) => console.log(line),
};

export interface ExecutionCheck {
  executionId: string;
  delivered: boolean;
  matches: boolean;
  status?: string;
  attempts?: number;
  sandbox?: string;
  jobs: number;
  pods: number;
  duplicate: boolean;
  ms?: number;
  note?: string;
}

export interface ChaosReport {
  executions: number;
  delivered: number;
  lost: number;
  matching: number;
  /** Delivered, differing from the fault-free result, but with a typed status (e.g. infra_error after lost pods). */
  typedDifferent: number;
  /** Delivered with a wrong result and no typed excuse. */
  wrong: number;
  duplicates: number;
  leaks: string[];
  workerKills: number;
  workerRestarts: number;
  temporalRestarts: number;
  apiserverOutages: number;
  podDeletions: number;
  /** Executions that ran in a warm pool pod. */
  warm: number;
  /** Pool pods whose launcher accepted a task (their termination message says which). */
  poolPodsThatRan: number;
  /** Pool pods claimed by more than one execution (must be 0: a pod runs one program, ever). */
  sharedPods: string[];
  /** With a pool: it was back at its size (ready pods) after the run. */
  poolBackAtSize?: boolean;
  worstMs: number;
  medianMs: number;
  checks: ExecutionCheck[];
}

function program(i: number): {
  code: string;
  expected: Pick<ExecutionResult, 'status' | 'exitCode' | 'stdout' | 'stderr'>;
} {
  const code = `import sys, time\ntime.sleep(${1 + (i % 3)})\nprint("exec ${i}")\nprint("err ${i}", file=sys.stderr)\nsys.exit(${i % 3})\n`;
  const exitCode = i % 3;
  return {
    code,
    expected: {
      status: exitCode === 0 ? 'succeeded' : 'failed',
      exitCode,
      stdout: `exec ${i}\n`,
      stderr: `err ${i}\n`,
    },
  };
}

async function retrying<T>(what: () => Promise<T>, deadline: number): Promise<T> {
  for (;;) {
    try {
      return await what();
    } catch (err) {
      if (err instanceof WorkflowFailedError || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  applyStackEnv();
  const random = seededRandom(opts.seed);
  const log = opts.log;
  const runId = `chaos-${Date.now().toString(36)}`;
  const taskQueue = runId;
  const workerEnv = {
    ...process.env,
    DS_TASK_QUEUE: taskQueue,
    DS_RECONCILE_INTERVAL_SECONDS: '0',
    DS_WARM_POOL_SIZE: String(opts.warmPool),
    DS_LOG_LEVEL: 'WARN',
  };
  const config = loadConfig(workerEnv);
  const kube: Kube = createKube(loadKubeConfig(process.env.DS_ADMIN_KUBECONFIG ?? process.env.KUBECONFIG));
  const namespace = config.policy.namespace;
  mkdirSync(path.join(PROJECT_ROOT, '.stack', 'logs'), { recursive: true });
  const supervisor = new WorkerSupervisor(workerEnv, path.join(PROJECT_ROOT, '.stack', 'logs', `${runId}-worker.log`));
  const observer = new ClusterObserver(kube, namespace);
  const ids = Array.from({ length: opts.executions }, (_, i) => `${runId}-${i}`);
  const labels = new Set(ids.map((id) => resourceNames(id, 1).executionLabel));
  const pools = (Object.keys(LANGUAGES) as Language[]).map((l) =>
    poolRef(taskQueue, l, config.policy, readLauncherSource()),
  );
  const poolIds = new Set(pools.map((p) => p.id));
  const inPool = (o: KubernetesObject) => poolIds.has(o.metadata?.labels?.[LABELS.pool] ?? '');
  const ours = (o: KubernetesObject) => labels.has(o.metadata?.labels?.[LABELS.execution] ?? '') || inPool(o);
  /** Every execution label each pool pod was ever seen with: more than one means a pod ran two programs. */
  const claimsByPod = new Map<string, Set<string>>();
  let done = 0;
  let podDeletions = 0;
  let temporalRestarts = 0;
  let apiserverOutages = 0;
  let lastTargeted = 0;
  let faultInProgress = false;
  /** Worker kills (random and targeted) happen only while executions run. */
  let killing = opts.killEveryMs > 0 || opts.targetedKills;

  const targeted = (why: string): void => {
    if (!killing || !opts.targetedKills || Date.now() - lastTargeted < 3000 || random() > 0.5) return;
    lastTargeted = Date.now();
    if (supervisor.kill()) log(`kill worker: ${why}`);
  };
  observer.on((kind, type, obj) => {
    if (!ours(obj)) return;
    if (kind === 'Pod' && inPool(obj)) {
      const label = obj.metadata?.labels?.[LABELS.execution];
      const pod = `${obj.metadata?.name} (${obj.metadata?.uid})`;
      if (label) claimsByPod.set(pod, (claimsByPod.get(pod) ?? new Set<string>()).add(label));
      if (type === 'ADDED') targeted(`pool pod ${obj.metadata?.name} created (replenishing)`);
      if (
        type === 'MODIFIED' &&
        label &&
        obj.metadata?.labels?.[LABELS.poolState] === 'claimed' &&
        !(obj as V1Pod).status?.containerStatuses?.[0]?.state?.terminated
      ) {
        targeted(`pool pod ${obj.metadata?.name} claimed (task being delivered or running)`);
      }
      // Ready pool pods deleted from outside, too: the pool must make up for them.
      if (type === 'MODIFIED' && !label && podDeletions < opts.podDeletions && random() < 0.1) {
        podDeletions++;
        log(`delete ready pool pod ${obj.metadata?.name} from outside`);
        void kube.core.deleteNamespacedPod({ name: obj.metadata!.name!, namespace }).catch(() => undefined);
      }
    }
    if (kind === 'Job' && type === 'ADDED') targeted(`Job ${obj.metadata?.name} just created`);
    if (kind === 'Job' && type === 'DELETED') targeted(`Job ${obj.metadata?.name} being deleted (cleanup)`);
    const pod = obj as V1Pod;
    const state = pod.status?.containerStatuses?.[0]?.state;
    if (kind === 'Pod' && type === 'MODIFIED' && state?.terminated && !pod.metadata?.deletionTimestamp) {
      targeted(`pod ${pod.metadata?.name} finished (collecting output)`);
    }
    if (
      kind === 'Pod' &&
      type === 'MODIFIED' &&
      state?.running &&
      !pod.metadata?.deletionTimestamp &&
      podDeletions < opts.podDeletions &&
      random() < 0.3
    ) {
      podDeletions++;
      log(`delete pod ${pod.metadata?.name} from outside`);
      void kube.core.deleteNamespacedPod({ name: pod.metadata!.name!, namespace }).catch(() => undefined);
    }
  });

  await observer.start();
  supervisor.start();
  const client = await SandboxClient.connect({
    connection: { address: config.temporal.address },
    namespace: config.temporal.namespace,
    taskQueue,
    policy: config.policy,
  });

  // Random worker kills, for as long as executions are running.
  const killer = (async () => {
    while (killing && opts.killEveryMs > 0) {
      await new Promise((r) => setTimeout(r, -Math.log(1 - random()) * opts.killEveryMs));
      if (killing && supervisor.kill()) log('kill worker: random');
    }
  })();

  // Server faults at fixed fractions of the completed executions, one at a time.
  const faults: { at: number; run: () => Promise<void> }[] = [];
  for (let k = 0; k < opts.temporalRestarts; k++) {
    faults.push({
      at: ((k + 1) / (opts.temporalRestarts + 1)) * 0.8,
      run: async () => {
        log('kill Temporal server');
        await killComponent('temporal');
        stackUp();
        temporalRestarts++;
        log('Temporal server back');
      },
    });
  }
  for (let k = 0; k < opts.apiserverOutages; k++) {
    faults.push({
      at: ((k + 1) / (opts.apiserverOutages + 1)) * 0.9,
      run: async () => {
        log(`kill kube-apiserver for ${opts.apiserverDownMs} ms`);
        await killComponent('kube-apiserver');
        await new Promise((r) => setTimeout(r, opts.apiserverDownMs));
        stackUp();
        apiserverOutages++;
        log('kube-apiserver back');
      },
    });
  }
  faults.sort((a, b) => a.at - b.at);
  const maybeFault = async (): Promise<void> => {
    if (faultInProgress || !faults.length || done / opts.executions < faults[0].at) return;
    faultInProgress = true;
    const f = faults.shift()!;
    try {
      await f.run();
    } catch (err) {
      // Counted as not done (the report's restart/outage counts stay lower), and said.
      log(`fault failed: ${String(err).slice(0, 500)}`);
    } finally {
      faultInProgress = false;
    }
  };

  const checks: ExecutionCheck[] = [];
  let next = 0;
  const runOne = async (i: number): Promise<void> => {
    const executionId = ids[i];
    const { code, expected } = program(i);
    const started = Date.now();
    const deadline = started + opts.resultTimeoutMs;
    let result: ExecutionResult | undefined;
    let note: string | undefined;
    try {
      const handle = await retrying(
        () => client.startExecution({ code, timeoutSeconds: 60 }, { executionId }),
        deadline,
      );
      result = await retrying(() => handle.result(), deadline);
    } catch (err) {
      note = String(err).slice(0, 300);
    }
    const ms = Date.now() - started;
    done++;
    void maybeFault();
    const matches =
      !!result &&
      result.status === expected.status &&
      result.exitCode === expected.exitCode &&
      result.stdout === expected.stdout &&
      result.stderr === expected.stderr;
    checks.push({
      executionId,
      delivered: !!result,
      matches,
      status: result?.status,
      attempts: result?.attempts,
      sandbox: result?.sandbox,
      jobs: 0,
      pods: 0,
      duplicate: false,
      ms,
      note:
        note ??
        (result && !matches
          ? `${result.status} ${result.error?.reason ?? ''} ${JSON.stringify(result.stdout)}`.trim()
          : undefined),
    });
  };
  await Promise.all(
    Array.from({ length: Math.min(opts.concurrency, opts.executions) }, async () => {
      while (next < opts.executions) await runOne(next++);
    }),
  );
  // Faults not reached yet still happen, one after another, before the checks.
  while (faults.length || faultInProgress) {
    if (faults.length) faults[0].at = 0;
    if (faultInProgress) await new Promise((r) => setTimeout(r, 500));
    else await maybeFault();
  }
  killing = false;
  await killer;

  // The pool refills after the storm, then is emptied so that nothing of this run stays.
  let poolBackAtSize: boolean | undefined;
  if (opts.warmPool > 0) {
    const sizeOk = async () => {
      for (const pool of pools) {
        const l = await kube.core.listNamespacedPod({ namespace, labelSelector: poolSelector(pool, 'ready') });
        if (l.items.filter((p) => claimable(p, pool)).length < opts.warmPool) return false;
      }
      return true;
    };
    const until = Date.now() + 90_000;
    poolBackAtSize = false;
    while (Date.now() < until && !(poolBackAtSize = await sizeOk().catch(() => false)))
      await new Promise((r) => setTimeout(r, 1000));
    log(`pool ${poolBackAtSize ? 'back at its size' : 'NOT back at its size'}; emptying it`);
    // As an operator would: the worker restarts with no pool, so no worker start can bring the old size back.
    await supervisor.restartWith({ DS_WARM_POOL_SIZE: '0' });
    await drainWarmPools(client.temporal, config, 90_000).catch((err) =>
      log(`could not empty the pool: ${String(err)}`),
    );
  }

  // Leaks: 60 s after the last result, nothing of these executions may remain.
  const until = Date.now() + opts.leakWindowMs;
  let leaks: string[];
  for (;;) {
    try {
      const sel = 'app.kubernetes.io/managed-by=durable-sandbox';
      const [jobs, pods, cms] = await Promise.all([
        kube.batch.listNamespacedJob({ namespace, labelSelector: sel }),
        kube.core.listNamespacedPod({ namespace, labelSelector: sel }),
        kube.core.listNamespacedConfigMap({ namespace, labelSelector: sel }),
      ]);
      leaks = [
        ...jobs.items.filter(ours).map((o) => `Job/${o.metadata!.name}`),
        // Pool pods count too: the pool was emptied above.
        ...pods.items.filter(ours).map((o) => `Pod/${o.metadata!.name}`),
        ...cms.items.filter(ours).map((o) => `ConfigMap/${o.metadata!.name}`),
      ];
    } catch {
      leaks = ['(apiserver unreachable)'];
    }
    if (leaks.length === 0 || Date.now() > until) break;
    await new Promise((r) => setTimeout(r, 1000));
  }

  await supervisor.stop();
  observer.stop();
  await client.close();

  for (const c of checks) {
    const label = resourceNames(c.executionId, 1).executionLabel;
    c.jobs = observer.jobs.get(label)?.size ?? 0;
    c.pods = observer.podsThatRan(label);
    // Each attempt makes one Job (a Job with backoffLimit 0 makes one pod) or takes one pool pod: more pods that ran
    // a program than attempts means a program ran twice.
    c.duplicate = c.attempts !== undefined && (c.jobs > c.attempts || c.pods > c.attempts);
  }
  const times = checks
    .filter((c) => c.delivered)
    .map((c) => c.ms!)
    .sort((a, b) => a - b);
  const typed = new Set(['infra_error', 'timed_out', 'oom_killed', 'cancelled']);
  return {
    executions: opts.executions,
    delivered: checks.filter((c) => c.delivered).length,
    lost: checks.filter((c) => !c.delivered).length,
    matching: checks.filter((c) => c.matches).length,
    typedDifferent: checks.filter((c) => c.delivered && !c.matches && typed.has(c.status!)).length,
    wrong: checks.filter((c) => c.delivered && !c.matches && !typed.has(c.status!)).length,
    duplicates: checks.filter((c) => c.duplicate).length,
    leaks,
    workerKills: supervisor.kills,
    workerRestarts: supervisor.restarts,
    temporalRestarts,
    apiserverOutages,
    podDeletions,
    warm: checks.filter((c) => c.sandbox === 'warm').length,
    poolPodsThatRan: [...observer.poolPodsThatRan].filter((uid) => observer.poolPods.has(uid)).length,
    sharedPods: [...claimsByPod]
      .filter(([, set]) => set.size > 1)
      .map(([pod, set]) => `${pod}: ${[...set].join(', ')}`),
    ...(poolBackAtSize !== undefined ? { poolBackAtSize } : {}),
    worstMs: times[times.length - 1] ?? 0,
    medianMs: times[Math.floor(times.length / 2)] ?? 0,
    checks: checks.sort((a, b) => a.executionId.localeCompare(b.executionId, 'en', { numeric: true })),
  };
}

export function formatReport(r: ChaosReport): string {
  const rows: [string, string | number][] = [
    ['executions', r.executions],
    ['results delivered', r.delivered],
    ['lost (no result)', r.lost],
    ['equal to the fault-free result', r.matching],
    ['different, with a typed status', r.typedDifferent],
    ['wrong result', r.wrong],
    ['duplicated Jobs or runs', r.duplicates],
    ['leaked objects after the window', r.leaks.length],
    ['worker kills (restarts)', `${r.workerKills} (${r.workerRestarts})`],
    ['Temporal restarts', r.temporalRestarts],
    ['apiserver outages', r.apiserverOutages],
    ['sandbox pods deleted from outside', r.podDeletions],
    ['executions on warm pool pods', r.warm],
    ['pool pods that ran a program', r.poolPodsThatRan],
    ['pool pods that ran two programs', r.sharedPods.length],
    ...(r.poolBackAtSize !== undefined
      ? ([['pool back at its size after', r.poolBackAtSize ? 'yes' : 'NO']] as [string, string][])
      : []),
    ['time to result, median / worst', `${(r.medianMs / 1000).toFixed(1)} s / ${(r.worstMs / 1000).toFixed(1)} s`],
  ];
  const lines = rows.map(([k, v]) => `  ${k.padEnd(36)} ${v}`);
  const odd = r.checks.filter((c) => !c.matches || c.duplicate || (c.attempts ?? 1) > 1);
  if (odd.length) {
    lines.push('', '  executions that were not plain:');
    for (const c of odd) {
      lines.push(
        `    ${c.executionId}: ${c.status ?? 'NO RESULT'} attempts=${c.attempts ?? '-'} jobs=${c.jobs} pods=${c.pods}${c.duplicate ? ' DUPLICATE' : ''} ${c.note ?? ''}`,
      );
    }
  }
  if (r.leaks.length) lines.push('', `  leaked: ${r.leaks.join(', ')}`);
  if (r.sharedPods.length) lines.push('', `  pool pods claimed twice: ${r.sharedPods.join('; ')}`);
  return lines.join('\n');
}

export function failed(r: ChaosReport): boolean {
  return (
    r.lost > 0 ||
    r.wrong > 0 ||
    r.duplicates > 0 ||
    r.leaks.length > 0 ||
    r.sharedPods.length > 0 ||
    r.poolBackAtSize === false
  );
}

/**
 * The soak: a mixed load through the real client for N minutes (cold, warm and JavaScript executions, sessions that
 * go idle and come back, cancels, invalid input, hostile programs) while faults come at random (worker SIGKILL,
 * Temporal restarts, apiserver outages, sandbox pods deleted); then every item's outcome is checked against what it
 * must give, programs run twice are counted, the cluster and Temporal are searched for anything left, and the
 * worker's memory over the run is reported.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { KubernetesObject } from '@kubernetes/client-node';
import { SandboxClient, type ExecutionResult } from '../../client';
import { NoWorkerError } from '../../client/errors';
import { createKube } from '../../activities/kube';
import { ANNOTATIONS, LABELS, MANAGED_BY, resourceNames } from '../../core/names';
import { InvalidInputError } from '../../core/validate';
import { loadConfig } from '../../worker/config';
import { loadKubeConfig } from '../../worker/connect';
import { applyStackEnv, PROJECT_ROOT } from '../../cli/local-stack';
import { drainWarmPools } from '../../worker/warm-pools';
import { killComponent, stackUp } from '../chaos/faults';
import { ClusterObserver } from '../chaos/observer';
import { WorkerSupervisor } from '../chaos/supervisor';
import { seededRandom } from '../seeded';

export interface SoakOptions {
  minutes: number;
  /** Items in flight at once. */
  concurrency: number;
  /** Mean time between each kind of fault (0: none of it). */
  killEveryMs: number;
  temporalRestartEveryMs: number;
  apiserverOutageEveryMs: number;
  apiserverDownMs: number;
  podDeleteEveryMs: number;
  seed: number;
  log: (line: string) => void;
}

export const DEFAULT_SOAK: SoakOptions = {
  minutes: 5,
  concurrency: 4,
  killEveryMs: 90_000,
  temporalRestartEveryMs: 8 * 60_000,
  apiserverOutageEveryMs: 7 * 60_000,
  apiserverDownMs: 5_000,
  podDeleteEveryMs: 60_000,
  seed: 1,
  log: (l) => console.log(l),
};

const KINDS = ['cold', 'warm', 'javascript', 'session', 'cancel', 'invalid', 'hostile'] as const;
type Kind = (typeof KINDS)[number];
/** How often each kind comes (out of the sum). */
const WEIGHTS: Record<Kind, number> = {
  cold: 3,
  warm: 4,
  javascript: 2,
  session: 3,
  cancel: 1,
  invalid: 1,
  hostile: 1,
};

/** right: what the item must give; typed: a typed failure the faults explain (its attempts ran out); wrong; lost. */
type Verdict = 'right' | 'typed' | 'wrong' | 'lost';

export interface Outcome {
  kind: Kind;
  id: string;
  verdict: Verdict;
  note?: string;
  ms: number;
  /** One-shot executions: the attempts their result reports (for the count of programs run twice). */
  attempts?: number;
}

export interface SoakReport {
  minutes: number;
  outcomes: Outcome[];
  byKind: Record<Kind, Record<Verdict, number>>;
  faults: { workerKills: number; temporalRestarts: number; apiserverOutages: number; podDeletes: number };
  duplicates: string[];
  leaks: string[];
  openWorkflows: number;
  rss: { afterWarmupMiB: number; atEndMiB: number; peakMiB: number; samples: number };
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
const TYPED = new Set(['infra_error', 'sandbox_lost']);

/** Calls the client again while Temporal is away (a restart), up to `ms`. */
async function patiently<T>(f: () => Promise<T>, ms = 120_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await f();
    } catch (err) {
      // No worker took it up yet (it is being restarted): every call here is idempotent by its id, so it is sent
      // again, as an agent backend would.
      const transient =
        err instanceof NoWorkerError ||
        /UNAVAILABLE|ECONNREFUSED|connect|deadline|Connection|SessionMoving|14 /i.test(String(err));
      if (!transient || Date.now() > until) throw err;
      await delay(1000);
    }
  }
}

function rssOf(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  applyStackEnv();
  const random = seededRandom(o.seed);
  const runId = `soak-${Date.now().toString(36)}`;
  const taskQueue = runId;
  const workerEnv = {
    ...process.env,
    DS_TASK_QUEUE: taskQueue,
    DS_RECONCILE_INTERVAL_SECONDS: '0',
    DS_WARM_POOL_SIZE: '1',
    DS_LOG_LEVEL: 'WARN',
  };
  const config = loadConfig(workerEnv);
  const namespace = config.policy.namespace;
  const kube = createKube(loadKubeConfig(process.env.DS_ADMIN_KUBECONFIG ?? process.env.KUBECONFIG));
  const supervisor = new WorkerSupervisor(workerEnv, path.join(PROJECT_ROOT, '.stack', 'logs', `${runId}-worker.log`));
  const observer = new ClusterObserver(kube, namespace);
  await observer.start();
  supervisor.start();
  const client = await SandboxClient.connect({
    connection: { address: config.temporal.address },
    namespace: config.temporal.namespace,
    taskQueue,
    policy: config.policy,
  });
  const log = o.log;
  const started = Date.now();
  const end = started + o.minutes * 60_000;
  const faults = { workerKills: 0, temporalRestarts: 0, apiserverOutages: 0, podDeletes: 0 };
  const executionLabels = new Set<string>();
  const sessionIds: string[] = [];
  const rss: { t: number; mib: number }[] = [];
  const sampler = setInterval(() => {
    const mib = rssOf(supervisor.pid);
    if (mib !== undefined) rss.push({ t: Date.now() - started, mib });
  }, 10_000);

  // Faults, each kind on its own clock, for as long as the load runs; server faults one at a time.
  let serverFault = false;
  const every = (meanMs: number, f: () => Promise<void>) =>
    meanMs > 0
      ? (async () => {
          for (;;) {
            // A fault drawn for after the load's end never comes (nor is waited for).
            const at = Date.now() - Math.log(1 - random()) * meanMs;
            if (at > end) return;
            await delay(at - Date.now());
            await f().catch((err: unknown) => log(`fault failed: ${String(err).slice(0, 300)}`));
          }
        })()
      : Promise.resolve();
  const server = async (what: string, f: () => Promise<void>) => {
    if (serverFault) return;
    serverFault = true;
    try {
      log(`${Math.round((Date.now() - started) / 1000)} s: ${what}`);
      await f();
    } finally {
      serverFault = false;
    }
  };
  const faulting = Promise.all([
    every(o.killEveryMs, async () => {
      if (supervisor.kill()) faults.workerKills++;
    }),
    every(o.temporalRestartEveryMs, () =>
      server('restart Temporal', async () => {
        await killComponent('temporal');
        stackUp();
        faults.temporalRestarts++;
      }),
    ),
    every(o.apiserverOutageEveryMs, () =>
      server(`take the apiserver away for ${o.apiserverDownMs} ms`, async () => {
        await killComponent('kube-apiserver');
        await delay(o.apiserverDownMs);
        stackUp();
        faults.apiserverOutages++;
      }),
    ),
    every(o.podDeleteEveryMs, async () => {
      const pods = await kube.core.listNamespacedPod({ namespace, labelSelector: `${LABELS.managedBy}=${MANAGED_BY}` });
      const ours = pods.items.filter(
        (p) =>
          p.status?.phase === 'Running' &&
          !p.metadata?.deletionTimestamp &&
          (executionLabels.has(p.metadata?.labels?.[LABELS.execution] ?? '') ||
            p.metadata?.annotations?.[ANNOTATIONS.sessionId]?.startsWith(runId)),
      );
      const victim = ours[Math.floor(random() * ours.length)];
      if (!victim) return;
      await kube.core.deleteNamespacedPod({ name: victim.metadata!.name!, namespace });
      faults.podDeletes++;
    }),
  ]);

  let n = 0;
  const total = Object.values(WEIGHTS).reduce((a, b) => a + b, 0);
  const pick = (): Kind => {
    let r = random() * total;
    for (const k of KINDS) if ((r -= WEIGHTS[k]) < 0) return k;
    return 'warm';
  };
  const oneShot = async (
    kind: Kind,
    id: string,
    input: Parameters<SandboxClient['executeCode']>[0],
    expect: (r: ExecutionResult) => boolean,
  ): Promise<Omit<Outcome, 'ms'>> => {
    executionLabels.add(resourceNames(id, 1).executionLabel);
    const r = await patiently(() => client.executeCode(input, { executionId: id }), 600_000);
    const verdict: Verdict = expect(r) ? 'right' : TYPED.has(r.status) ? 'typed' : 'wrong';
    return {
      kind,
      id,
      verdict,
      attempts: r.attempts,
      ...(verdict !== 'right' ? { note: `${r.status} ${r.error?.reason ?? ''} ${JSON.stringify(r.stdout)}` } : {}),
    };
  };
  const item = async (kind: Kind, i: number): Promise<Omit<Outcome, 'ms'>> => {
    const id = `${runId}-${kind}-${i}`;
    switch (kind) {
      case 'cold':
        // Limits a pool pod does not have: a Job made for it.
        return oneShot(
          kind,
          id,
          { code: `print("cold ${i}")`, limits: { cpu: '250m' } },
          (r) => r.stdout === `cold ${i}\n`,
        );
      case 'warm':
        return oneShot(kind, id, { code: `print("warm ${i}")` }, (r) => r.stdout === `warm ${i}\n`);
      case 'javascript':
        return oneShot(
          kind,
          id,
          { language: 'javascript', code: `console.log("js ${i}")` },
          (r) => r.stdout === `js ${i}\n`,
        );
      case 'hostile':
        return i % 2
          ? oneShot(kind, id, { code: 'b = bytearray(8 * 1024**3)' }, (r) =>
              ['oom_killed', 'failed'].includes(r.status),
            )
          : oneShot(kind, id, { code: 'while True: pass', timeoutSeconds: 2 }, (r) => r.status === 'timed_out');
      case 'invalid':
        try {
          await client.startExecution({ code: 'print(1)', timeoutSeconds: 10 ** 6 }, { executionId: id });
          return { kind, id, verdict: 'wrong', note: 'an execution with an impossible time limit was started' };
        } catch (err) {
          return err instanceof InvalidInputError
            ? { kind, id, verdict: 'right' }
            : { kind, id, verdict: 'wrong', note: String(err).slice(0, 200) };
        }
      case 'cancel': {
        executionLabels.add(resourceNames(id, 1).executionLabel);
        const handle = await patiently(() =>
          client.startExecution({ code: 'import time\ntime.sleep(120)' }, { executionId: id }),
        );
        await delay(1000 + random() * 3000);
        await patiently(() => client.cancelExecution(id));
        const r: ExecutionResult = await patiently(() => handle.result(), 300_000);
        return r.status === 'cancelled'
          ? { kind, id, verdict: 'right' }
          : { kind, id, verdict: TYPED.has(r.status) ? 'typed' : 'wrong', note: r.status };
      }
      case 'session': {
        sessionIds.push(id);
        const s = await patiently(() => client.openSession({ sessionId: id, idleTimeoutSeconds: 5, ifOpen: 'attach' }));
        try {
          const first = await patiently(
            () => s.run(`x = ${i}\nopen("f.txt", "w").write("${i}")`, { runId: `${id}-1` }),
            600_000,
          );
          // Some go idle (their pod is released) and come back on a new one with their state.
          if (random() < 0.4) await delay(9000);
          const second = await patiently(() => s.run('print(x, open("f.txt").read())', { runId: `${id}-2` }), 600_000);
          const right = first.status === 'succeeded' && second.stdout === `${i} ${i}\n`;
          return right
            ? { kind, id, verdict: 'right' }
            : {
                kind,
                id,
                verdict: TYPED.has(second.status) || TYPED.has(first.status) ? 'typed' : 'wrong',
                note: `${first.status}/${second.status} ${JSON.stringify(second.stdout)} ${second.stderr.slice(-200)}`,
              };
        } finally {
          await patiently(() => s.close()).catch(() => undefined);
        }
      }
    }
  };
  const outcomes: Outcome[] = [];
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      while (Date.now() < end) {
        const kind = pick();
        const i = ++n;
        const t = Date.now();
        try {
          outcomes.push({ ...(await item(kind, i)), ms: Date.now() - t });
        } catch (err) {
          // No worker took it up in time (it was being restarted): the caller is told for certain that nothing
          // ran, a typed answer it can act on.
          if (err instanceof NoWorkerError) {
            outcomes.push({
              kind,
              id: `${runId}-${kind}-${i}`,
              verdict: 'typed',
              note: err.message,
              ms: Date.now() - t,
            });
            continue;
          }
          outcomes.push({
            kind,
            id: `${runId}-${kind}-${i}`,
            verdict: 'lost',
            note: String(err).slice(0, 300),
            ms: Date.now() - t,
          });
        }
        const last = outcomes[outcomes.length - 1];
        if (last.verdict !== 'right') log(`${last.verdict}: ${last.id}: ${last.note ?? ''}`);
      }
    }),
  );
  await faulting;
  clearInterval(sampler);
  log(`load done: ${outcomes.length} items; draining the pool and looking for leftovers`);

  // The pool is emptied as an operator would (a worker with no pool), so nothing of the soak may stay.
  await supervisor.restartWith({ DS_WARM_POOL_SIZE: '0' });
  await drainWarmPools(client.temporal, config, 120_000).catch((err) =>
    log(`could not empty the pool: ${String(err)}`),
  );
  const ours = (x: KubernetesObject) =>
    executionLabels.has(x.metadata?.labels?.[LABELS.execution] ?? '') ||
    (x.metadata?.annotations?.[ANNOTATIONS.sessionId] ?? '').startsWith(runId) ||
    (x.metadata?.annotations?.[ANNOTATIONS.poolOwner] ?? '').includes(taskQueue);
  let leaks: string[];
  let openWorkflows: number;
  for (const until = Date.now() + 120_000; ;) {
    const sel = `${LABELS.managedBy}=${MANAGED_BY}`;
    const [jobs, pods, cms] = await Promise.all([
      kube.batch.listNamespacedJob({ namespace, labelSelector: sel }),
      kube.core.listNamespacedPod({ namespace, labelSelector: sel }),
      kube.core.listNamespacedConfigMap({ namespace, labelSelector: sel }),
    ]);
    leaks = [
      ...jobs.items.filter(ours).map((x) => `Job/${x.metadata!.name}`),
      ...pods.items.filter(ours).map((x) => `Pod/${x.metadata!.name}`),
      ...cms.items.filter(ours).map((x) => `ConfigMap/${x.metadata!.name}`),
    ];
    openWorkflows = (await client.temporal.workflow.count(`TaskQueue="${taskQueue}" AND ExecutionStatus="Running"`))
      .count;
    if ((leaks.length === 0 && openWorkflows === 0) || Date.now() > until) break;
    await delay(2000);
  }
  await supervisor.stop();
  observer.stop();
  await client.close();

  const duplicates = outcomes
    .filter((x) => x.attempts !== undefined)
    .flatMap((x) => {
      const label = resourceNames(x.id, 1).executionLabel;
      const jobs = observer.jobs.get(label)?.size ?? 0;
      const pods = observer.podsThatRan(label);
      return jobs > x.attempts! || pods > x.attempts!
        ? [`${x.id}: ${jobs} Jobs, ${pods} pods ran, ${x.attempts} attempts`]
        : [];
    });
  const byKind = Object.fromEntries(
    KINDS.map((k) => [k, { right: 0, typed: 0, wrong: 0, lost: 0 }]),
  ) as SoakReport['byKind'];
  for (const x of outcomes) byKind[x.kind][x.verdict]++;
  const warm = rss.filter((s) => s.t >= 60_000);
  return {
    minutes: o.minutes,
    outcomes,
    byKind,
    faults: { ...faults, workerKills: supervisor.kills },
    duplicates,
    leaks,
    openWorkflows,
    rss: {
      afterWarmupMiB: Math.round(warm[0]?.mib ?? rss[0]?.mib ?? 0),
      atEndMiB: Math.round(rss[rss.length - 1]?.mib ?? 0),
      peakMiB: Math.round(Math.max(0, ...rss.map((s) => s.mib))),
      samples: rss.length,
    },
  };
}

export function soakFailed(r: SoakReport): boolean {
  const bad = Object.values(r.byKind).reduce((a, v) => a + v.wrong + v.lost, 0);
  return bad > 0 || r.duplicates.length > 0 || r.leaks.length > 0 || r.openWorkflows !== 0;
}

export function formatSoak(r: SoakReport): string {
  const rows = KINDS.map((k) => {
    const v = r.byKind[k];
    const ms = r.outcomes
      .filter((x) => x.kind === k && x.verdict === 'right')
      .map((x) => x.ms)
      .sort((a, b) => a - b);
    const p50 = ms[Math.floor(ms.length / 2)] ?? 0;
    return `| ${k} | ${v.right + v.typed + v.wrong + v.lost} | ${v.right} | ${v.typed} | ${v.wrong} | ${v.lost} | ${(p50 / 1000).toFixed(1)} |`;
  });
  return [
    `Soak of ${r.minutes} min: ${r.outcomes.length} items; faults: ${r.faults.workerKills} worker SIGKILLs, ` +
      `${r.faults.temporalRestarts} Temporal restarts, ${r.faults.apiserverOutages} apiserver outages, ${r.faults.podDeletes} pods deleted`,
    '',
    '| kind | items | right | typed failure | wrong | lost | p50 s |',
    '|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Programs run twice: ${r.duplicates.length}${r.duplicates.length ? ` (${r.duplicates.join('; ')})` : ''}`,
    `Left in the cluster: ${r.leaks.length}${r.leaks.length ? ` (${r.leaks.join(', ')})` : ''}`,
    `Workflows left open: ${r.openWorkflows}`,
    `Worker RSS: ${r.rss.afterWarmupMiB} MiB after warm-up, ${r.rss.atEndMiB} MiB at the end, peak ${r.rss.peakMiB} MiB (${r.rss.samples} samples)`,
  ].join('\n');
}

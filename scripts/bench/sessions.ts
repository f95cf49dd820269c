/**
 * The session part of the bench: `print(1)` in an open session against the warm and cold paths and the physical
 * floor of a warm run, `kubectl exec` of `python3 -c 'print(1)'` into an already running gVisor pod with the same
 * limits (a second session's pod: the same hardened spec), interleaved exec, session, warm, cold so drift hits all.
 * Then what getting a session's state back costs: resume after the idle release, and restore after the pod was
 * deleted, each split into its phases (new pod, putting back the snapshot and running what it does not hold, the run
 * itself), for a session of 3 runs and one of LONG_RUNS; what a fork costs (its id, then its first run); and what a
 * large interpreter state costs each run (print(1) in a session holding BIG_MB of values: its checkpoint).
 */
import { spawn } from 'node:child_process';
import type { Kube } from '../../activities/kube';
import { stackBinary } from '../../cli/local-stack';
import type { Session, SessionRunResult } from '../../client';
import { CONTAINER_NAME } from '../../core/manifests';
import { sessionSelector } from '../../core/session';
import type { BenchWorker } from './ours';
import { fmt, summarize, table, type Summary } from './stats';

export interface SessionBenchDeps {
  kube: Kube;
  namespace: string;
  adminKubeconfig: string | undefined;
  /** A worker with no pool (cold runs, and the sessions) and one with a warm pool. */
  cold: BenchWorker;
  warm: BenchWorker;
  /** Waits (unmeasured) until the warm pool has a ready pod. */
  warmReady: () => Promise<void>;
  newId: (side: 'ours' | 'warm') => string;
  rounds: number;
  log: (line: string) => void;
  check: () => void;
}

export type SessionSide = 'exec' | 'session' | 'warm' | 'cold';
const SESSION_SIDES: SessionSide[] = ['exec', 'session', 'warm', 'cold'];

export interface RecoveryRecord {
  how: (typeof RECOVERIES)[number];
  totalMs: number;
  podMs: number;
  replayMs: number;
  replayedRuns: number;
  /** The run itself, after the pod and the replay. */
  runMs: number;
  /** The new pod was a warm pool pod. */
  warmPod: boolean;
}

export interface SessionBenchResult {
  latency: Record<SessionSide, number[]>;
  summary: Record<SessionSide, Summary>;
  /** session p50 / exec p50, and the same for warm and cold. */
  ratios: Record<SessionSide, number>;
  recoveries: RecoveryRecord[];
  /** fork(): until its id is in hand; then its first run (the snapshot put back on its new pod, and print). */
  forks: { forkMs: number; firstRunMs: number }[];
  /** print(1) in a session holding BIG_MB of values vs the session above (checkpointed after every run). */
  big: Summary;
  markdown: string;
}

const RECOVERIES = ['resume after idle', 'restore after pod loss', 'restore after pod loss (300 runs)'] as const;
const LONG_RUNS = 300;
const BIG_MB = 100;

const PRINT = 'print(1)';
const STATE = ['import json, math', 'x = 41', 'data = [i * i for i in range(1000)]'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Wall time of `kubectl exec` running print(1) in the pod (kubectl's own start included, as a user would see it),
 * timed by a shell of its own around kubectl, so the bench's own busy event loop does not count.
 */
function kubectlExec(deps: SessionBenchDeps, pod: string): Promise<number> {
  const kubectl = stackBinary('kubernetes', 'KUBERNETES_VERSION', 'kubectl');
  const args = [
    '-c',
    's=$(date +%s%N); out=$("$@"); rc=$?; e=$(date +%s%N); [ $rc -eq 0 ] && [ "$out" = 1 ] || exit 3; echo $(( (e - s) / 1000000 ))',
    'floor',
    kubectl,
    ...(deps.adminKubeconfig ? ['--kubeconfig', deps.adminKubeconfig] : []),
    'exec',
    '-n',
    deps.namespace,
    pod,
    '-c',
    CONTAINER_NAME,
    '--',
    'python3',
    '-c',
    PRINT,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) =>
      code === 0 && /^\d+\n$/.test(out)
        ? resolve(Number(out))
        : reject(new Error(`kubectl exec exited ${code}: ${out}${err}`.trim())),
    );
  });
}

/**
 * The exec floor's target: a plain pod of the session pod's own spec (image, limits, RuntimeClass, hardening), its
 * container only sleeping: no launcher, no session environment in it.
 */
async function plainPod(deps: SessionBenchDeps, like: string): Promise<string> {
  const src = await deps.kube.core.readNamespacedPod({ name: like, namespace: deps.namespace });
  const spec = structuredClone(src.spec!);
  delete spec.nodeName;
  spec.activeDeadlineSeconds = 3600;
  spec.containers = spec.containers.map((c) => ({
    ...c,
    command: ['sleep', '3600'],
    args: [],
    stdin: false,
    stdinOnce: false,
    readinessProbe: undefined,
  }));
  const name = `ds-bench-floor-${Date.now()}`;
  await deps.kube.core.createNamespacedPod({
    namespace: deps.namespace,
    body: { metadata: { name, labels: { 'app.kubernetes.io/name': 'durable-sandbox-bench-floor' } }, spec },
  });
  for (let i = 0; i < 240; i++) {
    const p = await deps.kube.core.readNamespacedPod({ name, namespace: deps.namespace });
    if (p.status?.containerStatuses?.[0]?.state?.running) return name;
    await sleep(500);
  }
  throw new Error(`the floor's plain pod ${name} did not start`);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = Date.now();
  await fn();
  return Date.now() - t0;
}

function succeeded(r: SessionRunResult): SessionRunResult {
  if (r.status !== 'succeeded')
    throw new Error(
      `session run ${r.seq}: ${r.status} ${r.stderr} ${r.error?.message ?? ''} ${JSON.stringify(r.session)}`,
    );
  return r;
}

function expectOne(r: SessionRunResult): SessionRunResult {
  if (r.status !== 'succeeded' || r.stdout !== '1\n')
    throw new Error(`session run: ${r.status} ${r.stdout}${r.stderr}`);
  return r;
}

async function podOf(session: Session): Promise<string> {
  const pod = (await session.state()).pod;
  if (!pod) throw new Error(`session ${session.id} has no pod`);
  return pod;
}

async function untilNoPods(deps: SessionBenchDeps, sessionId: string, timeoutMs = 120_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const pods = await deps.kube.core.listNamespacedPod({
      namespace: deps.namespace,
      labelSelector: sessionSelector(sessionId),
    });
    if (pods.items.length === 0) return;
    if (Date.now() > until) throw new Error(`the pods of session ${sessionId} are still there`);
    await sleep(250);
  }
}

function recovery(how: RecoveryRecord['how'], totalMs: number, r: SessionRunResult): RecoveryRecord {
  const restored = r.session.restored;
  const podMs = restored?.podMs ?? NaN;
  const replayMs = restored?.ms ?? 0;
  return {
    how,
    totalMs,
    podMs,
    replayMs,
    replayedRuns: restored?.runs ?? 0,
    runMs: totalMs - podMs - replayMs,
    warmPod: restored?.warmPod === true,
  };
}

export async function benchSessions(deps: SessionBenchDeps): Promise<SessionBenchResult> {
  const { cold, warm, log, check } = deps;
  const opened: Session[] = [];
  let targetPod: string | undefined;
  const open = async (options: Parameters<BenchWorker['client']['openSession']>[0] = {}, on: BenchWorker = cold) => {
    const s = await on.client.openSession(options);
    opened.push(s);
    return s;
  };
  try {
    // The session measured, and a second one whose pod is the exec floor's target: the same hardened spec and limits.
    const session = await open();
    const target = await open();
    expectOne(await session.run(PRINT));
    expectOne(await target.run(PRINT));
    targetPod = await plainPod(deps, await podOf(target));
    await target.close();
    await kubectlExec(deps, targetPod); // warm-up, not counted
    const latency: Record<SessionSide, number[]> = { exec: [], session: [], warm: [], cold: [] };
    for (let i = 0; i < deps.rounds; i++) {
      check();
      latency.exec.push(await kubectlExec(deps, targetPod));
      latency.session.push(await timed(async () => expectOne(await session.run(PRINT))));
      await deps.warmReady();
      latency.warm.push(
        await timed(async () => {
          const r = await warm.client.executeCode({ code: PRINT }, { executionId: deps.newId('warm') });
          if (r.sandbox !== 'warm' || r.stdout !== '1\n') throw new Error(`warm run: ${r.sandbox} ${r.status}`);
        }),
      );
      latency.cold.push(
        await timed(async () => {
          const r = await cold.client.executeCode({ code: PRINT }, { executionId: deps.newId('ours') });
          if (r.stdout !== '1\n') throw new Error(`cold run: ${r.status} ${r.error?.message ?? ''}`);
        }),
      );
      log(`session round ${i + 1}/${deps.rounds}: ${SESSION_SIDES.map((s) => `${s} ${latency[s][i]} ms`).join(', ')}`);
      // Let the cold run's cleanup finish before the next round.
      await sleep(1500);
    }

    // Getting the state back: after the idle release, and after the pod was deleted from outside. On the worker
    // with a pool: a session's new pod is a ready pool pod when one is there (as it is after a quiet while).
    const recoveries: RecoveryRecord[] = [];
    const idle = await open({ idleTimeoutSeconds: 2 }, warm);
    for (const code of STATE) succeeded(await idle.run(code));
    for (let i = 0; i < Math.min(3, deps.rounds); i++) {
      check();
      await untilNoPods(deps, idle.id);
      await deps.warmReady();
      const t0 = Date.now();
      const r = expectOne(await idle.run('print(x + 1 - 41)'));
      recoveries.push(recovery('resume after idle', Date.now() - t0, r));
    }
    const lost = await open({}, warm);
    for (const code of STATE) succeeded(await lost.run(code));
    for (let i = 0; i < Math.min(3, deps.rounds); i++) {
      check();
      const pod = await podOf(lost);
      await deps.kube.core.deleteNamespacedPod({ name: pod, namespace: deps.namespace, gracePeriodSeconds: 0 });
      await untilNoPods(deps, lost.id);
      await deps.warmReady();
      const t0 = Date.now();
      const r = expectOne(await lost.run('print(x + 1 - 41)'));
      recoveries.push(recovery('restore after pod loss', Date.now() - t0, r));
    }
    // The same after 300 runs: with snapshots the restore does not grow with the session.
    const long = await open({}, warm);
    for (let i = 0; i < LONG_RUNS; i++) succeeded(await long.run(`v${i % 10} = ${i}\nx = 41`));
    for (let i = 0; i < Math.min(2, deps.rounds); i++) {
      check();
      const pod = await podOf(long);
      await deps.kube.core.deleteNamespacedPod({ name: pod, namespace: deps.namespace, gracePeriodSeconds: 0 });
      await untilNoPods(deps, long.id);
      await deps.warmReady();
      const t0 = Date.now();
      const r = expectOne(await long.run('print(x + 1 - 41)'));
      recoveries.push(recovery('restore after pod loss (300 runs)', Date.now() - t0, r));
    }
    // Fork: a copy of the live state (its id), then the copy's first run on a pod of its own.
    const forks: SessionBenchResult['forks'] = [];
    for (let i = 0; i < Math.min(3, deps.rounds); i++) {
      check();
      await deps.warmReady();
      const t0 = Date.now();
      const [copy] = await lost.fork();
      opened.push(copy);
      const forkMs = Date.now() - t0;
      const firstRunMs = await timed(async () => expectOne(await copy.run('print(x + 1 - 41)')));
      forks.push({ forkMs, firstRunMs });
      log(`fork: ${forkMs} ms, its first run ${firstRunMs} ms`);
      await copy.close();
    }
    // A large state: each run's checkpoint pickles it (written only when it changed).
    const heavy = await open({ limits: { memory: '1Gi' } });
    succeeded(await heavy.run(`big = bytes(${BIG_MB} << 20)\nx = 41`));
    const bigMs: number[] = [];
    for (let i = 0; i < Math.max(5, deps.rounds); i++)
      bigMs.push(await timed(async () => expectOne(await heavy.run(PRINT))));
    log(`print(1) with ${BIG_MB} MB of values: ${bigMs.join(', ')} ms`);
    for (const r of recoveries)
      log(
        `${r.how}: ${r.totalMs} ms (${r.warmPod ? 'warm' : 'new'} pod ${r.podMs}, replay ${r.replayMs}, run ${r.runMs})`,
      );

    const summary = Object.fromEntries(SESSION_SIDES.map((s) => [s, summarize(latency[s])])) as Record<
      SessionSide,
      Summary
    >;
    const big = summarize(bigMs);
    const ratios = Object.fromEntries(SESSION_SIDES.map((s) => [s, summary[s].p50 / summary.exec.p50])) as Record<
      SessionSide,
      number
    >;
    const rows = SESSION_SIDES.map((s) => [
      s,
      summary[s].n,
      fmt(summary[s].p50),
      fmt(summary[s].p95),
      fmt(summary[s].min),
      fmt(ratios[s], 2),
    ]);
    const recRows = RECOVERIES.map((how) => {
      const of = recoveries.filter((r) => r.how === how);
      const med = (k: keyof RecoveryRecord) => fmt(summarize(of.map((r) => Number(r[k]))).p50);
      const warmPods = of.filter((r) => r.warmPod).length;
      // The target: no slower than a warm one-shot run plus the restore itself (the replay).
      const bound = summary.warm.p50 + summarize(of.map((r) => r.replayMs)).p50;
      return [
        how,
        of.length,
        med('totalMs'),
        med('podMs'),
        `${warmPods}/${of.length}`,
        med('replayMs'),
        of[0]?.replayedRuns ?? 0,
        med('runMs'),
        fmt(summarize(of.map((r) => r.totalMs)).p50 / bound, 2),
      ];
    });
    const markdown =
      `${table([['side', 'n', 'p50 ms', 'p95 ms', 'min ms', 'p50 / exec p50'], ...rows], ['l', 'r', 'r', 'r', 'r', 'r'])}\n\n` +
      `exec: \`kubectl exec\` of \`python3 -c 'print(1)'\` into a plain pod of a session pod's spec (the same ` +
      `image, gVisor, limits and hardening; only \`sleep\` in it), timed by a shell of its own around kubectl ` +
      `(kubectl's start included), the floor of a warm run. session: Session.run('print(1)') in an open ` +
      `session, until the result is in hand. warm / cold: SandboxClient.executeCode('print(1)') on a warm pool pod / ` +
      `a new Job. Interleaved exec, session, warm, cold per round.\n\n` +
      `${table([['getting the state back', 'n', 'total ms', 'new pod ms', 'warm pods', 'replay ms', 'runs replayed', 'the run ms', 'total / (warm p50 + replay)'], ...recRows], ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'])}\n\n` +
      `Medians. The session had ${STATE.length} earlier runs (imports, a variable, a list), or ${LONG_RUNS}; resume: ` +
      `after its pod was released on idle (2 s); restore: after its pod was deleted from outside; both on the worker ` +
      `with a warm pool, once it has a ready pod. "replay ms": putting back the newest snapshot (files, then the ` +
      `interpreter's checkpoint) and running the runs it does not hold ("runs replayed"). The run itself = total − ` +
      `new pod − replay.\n\n` +
      `${table(
        [
          ['fork', 'n', 'p50 ms', 'min ms'],
          [
            'fork() until its id',
            forks.length,
            fmt(summarize(forks.map((f) => f.forkMs)).p50),
            fmt(summarize(forks.map((f) => f.forkMs)).min),
          ],
          [
            "the fork's first run",
            forks.length,
            fmt(summarize(forks.map((f) => f.firstRunMs)).p50),
            fmt(summarize(forks.map((f) => f.firstRunMs)).min),
          ],
        ],
        ['l', 'r', 'r', 'r'],
      )}\n\n` +
      `${table(
        [
          ['print(1) in a session holding', 'n', 'p50 ms', 'p95 ms', 'vs the session above'],
          [`${BIG_MB} MB of values`, big.n, fmt(big.p50), fmt(big.p95), fmt(big.p50 / summary.session.p50, 2)],
        ],
        ['l', 'r', 'r', 'r', 'r'],
      )}\n\n` +
      `A run's checkpoint is taken after its answer; the next run waits for it. An unchanged state is not written again, ` +
      `but it is pickled to know that.`;
    return { latency, summary, ratios, recoveries, forks, big, markdown };
  } finally {
    if (targetPod)
      await deps.kube.core
        .deleteNamespacedPod({ name: targetPod, namespace: deps.namespace, gracePeriodSeconds: 0 })
        .catch(() => undefined);
    await Promise.all(opened.map((s) => s.close().catch(() => undefined)));
  }
}

/**
 * The session part of the bench: `print(1)` in an open session against the warm and cold paths and the physical
 * floor of a warm run, `kubectl exec` of `python3 -c 'print(1)'` into an already running gVisor pod with the same
 * limits (a second session's pod: the same hardened spec), interleaved exec, session, warm, cold so drift hits all.
 * Then what getting a session's state back costs: resume after the idle release, and restore after the pod was
 * deleted, each split into its phases (new pod, replay of the earlier runs, the run itself).
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
  how: 'resume after idle' | 'restore after pod loss';
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
  markdown: string;
}

const PRINT = 'print(1)';
const STATE = ['import json, math', 'x = 41', 'data = [i * i for i in range(1000)]'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wall time of `kubectl exec` running print(1) in the pod (kubectl's own start included, as a user would see it). */
function kubectlExec(deps: SessionBenchDeps, pod: string): Promise<number> {
  const kubectl = stackBinary('kubernetes', 'KUBERNETES_VERSION', 'kubectl');
  const args = [
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
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(kubectl, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) =>
      code === 0 && out === '1\n'
        ? resolve(Date.now() - t0)
        : reject(new Error(`kubectl exec exited ${code}: ${out}${err}`.trim())),
    );
  });
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
    const targetPod = await podOf(target);
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
    for (const r of recoveries)
      log(
        `${r.how}: ${r.totalMs} ms (${r.warmPod ? 'warm' : 'new'} pod ${r.podMs}, replay ${r.replayMs}, run ${r.runMs})`,
      );

    const summary = Object.fromEntries(SESSION_SIDES.map((s) => [s, summarize(latency[s])])) as Record<
      SessionSide,
      Summary
    >;
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
    const recRows = (['resume after idle', 'restore after pod loss'] as const).map((how) => {
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
      `exec: \`kubectl exec\` of \`python3 -c 'print(1)'\` into a running session pod (the same gVisor sandbox and ` +
      `limits; kubectl's own start included), the floor of a warm run. session: Session.run('print(1)') in an open ` +
      `session, until the result is in hand. warm / cold: SandboxClient.executeCode('print(1)') on a warm pool pod / ` +
      `a new Job. Interleaved exec, session, warm, cold per round.\n\n` +
      `${table([['getting the state back', 'n', 'total ms', 'new pod ms', 'warm pods', 'replay ms', 'runs replayed', 'the run ms', 'total / (warm p50 + replay)'], ...recRows], ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'])}\n\n` +
      `Medians. The session had ${STATE.length} earlier runs (imports, a variable, a list); resume: after its pod was ` +
      `released on idle (2 s); restore: after its pod was deleted from outside; both on the worker with a warm pool, ` +
      `once it has a ready pod. The run itself = total − new pod − replay.`;
    return { latency, summary, ratios, recoveries, markdown };
  } finally {
    await Promise.all(opened.map((s) => s.close().catch(() => undefined)));
  }
}

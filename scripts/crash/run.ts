/**
 * The crash-point harness: for every durable step (steps.ts), a try that dies at each of its requests to the
 * Kubernetes API, before the request and after it, each followed by a retry; then pairs: a first try that dies at
 * one point and a second that dies at a point of its own, then a third. After each sequence the step's invariants
 * must hold and, once the case's cleanup ran, nothing of it may be left.
 */
import { randomBytes } from 'node:crypto';
import { loadConfig } from '../../worker/config';
import { readLauncherSource, readWorkspaceSource } from '../../worker/worker';
import { createKube } from '../../activities/kube';
import { createActivities } from '../../activities';
import { loadKubeConfig } from '../../worker/connect';
import { s3WorkspaceStore } from '../../activities/workspace-store';
import type { CrashAt, CrashMode } from './crashable';
import { poolEmpty, STEP_CASES, type Harness, type StepCase } from './steps';
import { runWithCrashes, type TryRecord } from './tries';
import { seededRandom } from '../seeded';

export interface CrashOptions {
  /** Which cases (by name substring; all when empty). */
  only: string[];
  /** Pairs run per case: a sample drawn with `seed` (Infinity: every pair). */
  pairsPerCase: number;
  /** Cases run at once (each has its own task queue and pool). */
  concurrency: number;
  seed: number;
  log: (line: string) => void;
}

export const DEFAULT_CRASH: CrashOptions = {
  only: [],
  pairsPerCase: 4,
  concurrency: 3,
  seed: 1,
  log: (l) => console.log(l),
};

export interface SequenceFailure {
  crashes: string;
  wrong: string[];
}

export interface CaseReport {
  name: string;
  /** The requests of an unfaulted try, in order. */
  points: string[];
  /** Single crashes run (each point, before and after it) and how many of them the try reached. */
  singles: number;
  reached: number;
  /** Pairs there are (a crash in try 1, then one in try 2) and pairs run. */
  pairUniverse: number;
  pairs: number;
  failures: SequenceFailure[];
  ms: number;
}

const MODES: readonly CrashMode[] = ['before', 'after'];
const describe = (crashes: ReadonlyArray<CrashAt | undefined>, tries: TryRecord[]) =>
  crashes
    .map((c, i) =>
      c ? `try ${i + 1} dies ${c.mode} #${c.point} ${tries[i]?.died ? tries[i].died.name : '(not reached)'}` : '',
    )
    .filter(Boolean)
    .join(', then ');

export function harnessFor(prefix: string): Harness {
  const taskQueue = `${prefix}-${randomBytes(4).toString('hex')}`;
  const config = loadConfig({ ...process.env, DS_TASK_QUEUE: taskQueue, DS_WARM_POOL_SIZE: '0' });
  const deps = {
    policy: config.policy,
    launcherSource: readLauncherSource(),
    workspaceSource: readWorkspaceSource(),
    ...(config.workspaceStore ? { workspaces: s3WorkspaceStore(config.workspaceStore) } : {}),
    pool: { size: 0, maxIdleSeconds: 600, sizes: { python: 1 } },
  };
  const plainKube = createKube(loadKubeConfig(config.kubeconfig), { shared: true });
  let n = 0;
  return {
    world: { kubeconfig: config.kubeconfig, taskQueue, deps },
    admin: createKube(loadKubeConfig(process.env.DS_ADMIN_KUBECONFIG ?? process.env.KUBECONFIG)),
    plain: createActivities({ ...deps, kube: plainKube }),
    id: (p) => `${p}-${taskQueue}-${++n}`,
    close: () => plainKube.close(),
  };
}

/** One sequence of deaths and retries, then the checks and the case's cleanup. */
async function sequence(
  h: Harness,
  c: StepCase,
  crashes: ReadonlyArray<CrashAt | undefined>,
): Promise<{ tries: TryRecord[]; wrong: string[] }> {
  const input = await c.prepare(h);
  let result: unknown;
  let tries: TryRecord[] = [];
  const wrong: string[] = [];
  try {
    const run = await runWithCrashes(
      h.world,
      c.step,
      input,
      crashes,
      () => c.beforeRetry?.(h, input) ?? Promise.resolve(),
    );
    result = run.result;
    tries = run.tries;
    wrong.push(...(await c.check(h, input, result)));
  } catch (err) {
    wrong.push(`the step failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const left = await c.finish(h, input, result);
  wrong.push(...left.map((l) => `left after cleanup: ${l}`));
  return { tries, wrong };
}

export async function runCase(c: StepCase, o: CrashOptions): Promise<CaseReport> {
  const started = Date.now();
  const h = harnessFor('crash');
  const report: CaseReport = {
    name: c.name,
    points: [],
    singles: 0,
    reached: 0,
    pairUniverse: 0,
    pairs: 0,
    failures: [],
    ms: 0,
  };
  const fail = (crashes: ReadonlyArray<CrashAt | undefined>, tries: TryRecord[], wrong: string[]) => {
    if (wrong.length === 0) return;
    const f = { crashes: describe(crashes, tries) || 'no crash', wrong };
    report.failures.push(f);
    o.log(`  ✗ ${c.name}: ${f.crashes}: ${wrong.join('; ')}`);
  };
  try {
    const probe = await sequence(h, c, []);
    fail([], probe.tries, probe.wrong);
    report.points = probe.tries[0]?.points ?? [];
    o.log(`${c.name}: ${report.points.map((p, i) => `#${i + 1} ${p}`).join(', ')}`);
    // Try 2's points after each single crash: where a second death can land.
    const seconds: Array<{ first: CrashAt; points: number }> = [];
    for (let point = 1; point <= report.points.length; point++) {
      for (const mode of MODES) {
        const crashes = [{ point, mode }];
        const s = await sequence(h, c, crashes);
        report.singles++;
        if (s.tries[0]?.died) report.reached++;
        fail(crashes, s.tries, s.wrong);
        if (s.tries[0]?.died && s.tries[1]) seconds.push({ first: crashes[0], points: s.tries[1].points.length });
      }
    }
    const universe = seconds.flatMap(({ first, points }) =>
      Array.from({ length: points }, (_, i) =>
        MODES.map((mode) => [first, { point: i + 1, mode }] as CrashAt[]),
      ).flat(),
    );
    report.pairUniverse = universe.length;
    const draw = seededRandom(o.seed);
    const chosen =
      o.pairsPerCase >= universe.length
        ? universe
        : Array.from({ length: o.pairsPerCase }, () => universe.splice(Math.floor(draw() * universe.length), 1)[0]);
    for (const crashes of chosen) {
      const s = await sequence(h, c, crashes);
      report.pairs++;
      fail(crashes, s.tries, s.wrong);
    }
  } finally {
    // The case's pool goes with it (a ready pod would otherwise idle out and stay as an ended pod).
    await poolEmpty(h).catch((err: unknown) => o.log(`${c.name}: could not empty its pool: ${String(err)}`));
    h.close();
  }
  report.ms = Date.now() - started;
  o.log(
    `${c.name}: ${report.points.length} points, ${report.singles} single crashes (${report.reached} reached), ` +
      `${report.pairs} of ${report.pairUniverse} pairs, ${report.failures.length} failed, ${(report.ms / 1000).toFixed(0)} s`,
  );
  return report;
}

export async function runCrashPoints(o: CrashOptions): Promise<CaseReport[]> {
  const cases = STEP_CASES.filter((c) => o.only.length === 0 || o.only.some((s) => c.name.includes(s)));
  const reports: CaseReport[] = new Array(cases.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(o.concurrency, cases.length) }, async () => {
      while (next < cases.length) {
        const i = next++;
        reports[i] = await runCase(cases[i], o);
      }
    }),
  );
  return reports;
}

export function formatCrashReport(reports: CaseReport[]): string {
  const rows = reports.map(
    (r) =>
      `${r.name.padEnd(50)} ${String(r.points.length).padStart(6)} ${String(r.singles).padStart(7)} ${String(r.reached).padStart(7)} ` +
      `${`${r.pairs}/${r.pairUniverse}`.padStart(9)} ${String(r.failures.length).padStart(6)} ${(r.ms / 1000).toFixed(0).padStart(5)}`,
  );
  const sum = (f: (r: CaseReport) => number) => reports.reduce((a, r) => a + f(r), 0);
  return [
    `${'step'.padEnd(50)} ${'points'.padStart(6)} ${'singles'.padStart(7)} ${'reached'.padStart(7)} ${'pairs'.padStart(9)} ${'failed'.padStart(6)} ${'s'.padStart(5)}`,
    ...rows,
    `${'all'.padEnd(50)} ${String(sum((r) => r.points.length)).padStart(6)} ${String(sum((r) => r.singles)).padStart(7)} ` +
      `${String(sum((r) => r.reached)).padStart(7)} ${`${sum((r) => r.pairs)}/${sum((r) => r.pairUniverse)}`.padStart(9)} ` +
      `${String(sum((r) => r.failures.length)).padStart(6)}`,
  ].join('\n');
}

/**
 * npm run bench:capacity [-- options]: how many executions per second one node carries, with 1, 2 and 4 worker
 * processes. For each worker count it starts that many real workers (`node dist/dev/worker.js`, each its own
 * process, cold sandboxes with requests of cpu 10m / memory 32Mi so the node's CPU, not its allocatable, is the
 * limit), then offers print(1) executions at rising rates, open loop (one every 1/rate s, however many are in
 * flight), for a fixed window each, until a rate is not sustained: latency grows over the window (the second half's
 * median above 1.5 x the first half's plus 1 s) or an execution fails. Per rate: executions/s completed, p50/p95
 * latency, node CPU, each component's CPU (where the limit is), and the workers' CPU seconds per execution and RSS.
 *
 * Needs the local stack (npm run stack:up). Builds dist/ first (npm run build). Writes
 * bench-results/capacity-<time>.json and .md.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createKube } from '../../activities/kube';
import { SandboxClient } from '../../client';
import { freePort } from '../../dev/free-port';
import { applyStackEnv, PROJECT_ROOT, STACK_DIR } from '../../cli/local-stack';
import { loadConfig } from '../../worker/config';
import { loadKubeConfig } from '../../worker/connect';
import { Sampler, type LoadReport } from './sampler';
import { settle } from './settle';
import { fmt, median, quantile, table } from './stats';

const USAGE = `usage: npm run bench:capacity [-- options]
  --workers 1,2,4        worker process counts (default 1,2,4)
  --rates 0.5,0.75,1     offered executions/s, tried in order until one is not sustained (default 0.5,0.75,1,1.25,1.5,2)
  --window S             seconds of offered load per rate (default 40)
  --warmup S             seconds of unmeasured load at the first rate after the workers start (default 40): a new
                         worker process spends its first half-minute or so compiling and collecting its start-up
                         garbage, which a first window would otherwise put on its executions' bill  --out DIR              where to write the results (default bench-results/)
  --cpu-prof DIR         run each worker under node --cpu-prof, writing its profile to DIR (summarise one with
                         npm run bench:profile -- FILE)
  --temporal-only        the workers' Temporal part alone (scripts/bench/temporal-only-worker.ts: the same worker
                         and workflow, run and cleanup steps that touch no cluster): what Temporal costs per execution`;

/** What each sandbox asks for: small, so that pods are never left Pending for want of allocatable CPU. */
const SANDBOX_ENV = { DS_REQUEST_CPU: '10m', DS_REQUEST_MEMORY: '32Mi' };
const CODE = 'print(1)';
const log = (s: string) => process.stdout.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Run {
  startedAt: number;
  ms: number;
  ok: boolean;
  error?: string;
}

export interface RateResult {
  workers: number;
  offered: number;
  executions: number;
  failed: number;
  /** The rate executions completed at: (completions - 1) / (last completion - first completion). */
  completedPerSecond: number;
  p50: number;
  p95: number;
  firstHalfP50: number;
  secondHalfP50: number;
  sustained: boolean;
  why?: string;
  nodeBusyAvgPct: number;
  /** % of one core, by component. */
  cpuAvgPct: Record<string, number>;
  workerCpuMsPerExecution: number;
  /** Of that, the workers' main threads (JavaScript, activities, the Temporal worker's JS side). */
  workerMainThreadMsPerExecution: number;
  workerRssPeakMiB: number[];
  /** The component using the most CPU, and whether the node was busy. */
  limit: string;
  /** What the rest of the node ran, by command (% of one core). */
  restByCommand: Record<string, number>;
}

/**
 * Whether an offered rate was carried: nothing failed, executions completed at (nearly) the offered rate, and
 * latency did not keep growing over the window.
 */
export function sustainedVerdict(
  runs: Run[],
  offered: number,
): { sustained: boolean; why?: string; first: number; second: number; completedPerSecond: number } {
  const sorted = [...runs].sort((a, b) => a.startedAt - b.startedAt);
  const half = Math.floor(sorted.length / 2);
  const first = median(sorted.slice(0, half).map((r) => r.ms));
  const second = median(sorted.slice(half).map((r) => r.ms));
  const ends = runs
    .filter((r) => r.ok)
    .map((r) => r.startedAt + r.ms)
    .sort((a, b) => a - b);
  const completedPerSecond = ends.length > 1 ? ((ends.length - 1) * 1000) / (ends[ends.length - 1] - ends[0]) : NaN;
  const base = { first, second, completedPerSecond };
  const failed = runs.filter((r) => !r.ok);
  if (failed.length) return { ...base, sustained: false, why: `${failed.length} failed: ${failed[0].error}` };
  if (!(completedPerSecond >= 0.85 * offered))
    return { ...base, sustained: false, why: `completed ${fmt(completedPerSecond, 2)}/s` };
  if (second > 1.5 * first + 1000)
    return { ...base, sustained: false, why: `latency grew: p50 ${fmt(first)} → ${fmt(second)} ms` };
  return { ...base, sustained: true };
}

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** utime + stime of a process's main thread, in ms (Linux: /proc/PID/task/PID/stat; clock ticks of 10 ms). */
function mainThreadCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

interface Workers {
  procs: ChildProcess[];
  stop(): Promise<void>;
}

async function startWorkers(
  n: number,
  taskQueue: string,
  logDir: string,
  cpuProfDir?: string,
  temporalOnly = false,
): Promise<Workers> {
  const procs: ChildProcess[] = [];
  const ready: string[] = [];
  for (let i = 0; i < n; i++) {
    const health = `127.0.0.1:${await freePort()}`;
    const out = path.join(logDir, `capacity-worker-${n}-${i + 1}.log`);
    writeFileSync(out, '');
    const prof = cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(cpuProfDir)}`] : [];
    const main = temporalOnly ? 'dist/scripts/bench/temporal-only-worker.js' : 'dist/dev/worker.js';
    const child = spawn(process.execPath, [...prof, path.join(PROJECT_ROOT, main)], {
      env: {
        ...process.env,
        ...SANDBOX_ENV,
        DS_TASK_QUEUE: taskQueue,
        DS_WARM_POOL_SIZE: '0',
        DS_RECONCILE_INTERVAL_SECONDS: '0',
        DS_HEALTH_ADDRESS: health,
        DS_LOG_LEVEL: 'WARN',
        DS_WORKER_IDENTITY: `capacity-${n}-${i + 1}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const append = (b: Buffer) => writeFileSync(out, b, { flag: 'a' });
    child.stdout.on('data', append);
    child.stderr.on('data', append);
    procs.push(child);
    ready.push(`http://${health}/readyz`);
  }
  const deadline = Date.now() + 120_000;
  for (const url of ready) {
    for (;;) {
      if (procs.some((p) => p.exitCode !== null)) throw new Error(`a worker exited at start; see ${logDir}`);
      const ok = await fetch(url)
        .then((r) => r.ok)
        .catch(() => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`workers not ready within 120 s; see ${logDir}`);
      await sleep(500);
    }
  }
  return {
    procs,
    async stop() {
      await Promise.all(
        procs.map(
          (p) =>
            new Promise<void>((resolve) => {
              if (p.exitCode !== null) return resolve();
              p.once('exit', () => resolve());
              p.kill('SIGTERM');
              setTimeout(() => p.kill('SIGKILL'), 30_000).unref();
            }),
        ),
      );
    },
  };
}

async function runOne(client: SandboxClient, id: string): Promise<Run> {
  const startedAt = Date.now();
  try {
    const r = await client.executeCode({ code: CODE }, { executionId: id });
    const ok = r.status === 'succeeded' && r.stdout === '1\n';
    return {
      startedAt,
      ms: Date.now() - startedAt,
      ok,
      ...(ok ? {} : { error: `${r.status} ${r.error?.reason ?? ''}` }),
    };
  } catch (err) {
    return { startedAt, ms: Date.now() - startedAt, ok: false, error: String(err) };
  }
}

/** The component with the most CPU in the window; the node counts as the limit when it was nearly all busy. */
function limitOf(load: LoadReport): string {
  const top = Object.entries(load.cpuAvgPct).sort((a, b) => b[1] - a[1])[0];
  const node = load.nodeBusyAvgPct >= 85 ? `node CPU (${fmt(load.nodeBusyAvgPct)}% busy); ` : '';
  return `${node}most: ${top[0]} ${fmt(top[1])}% of a core`;
}

/** The executions offered so far: their workflows (cleanup after the result) must end before the workers stop. */
const started: string[] = [];

/** Waits (up to 2 minutes) until every offered execution's workflow has completed, cleanup included. */
async function drain(client: SandboxClient): Promise<void> {
  const ids = started.splice(0);
  const until = Date.now() + 120_000;
  const open = (
    await Promise.all(
      ids.map((id) =>
        Promise.race([
          client.temporal.workflow
            .getHandle(id)
            .result()
            .then(
              () => undefined,
              () => undefined,
            ),
          sleep(Math.max(0, until - Date.now())).then(() => id),
        ]),
      ),
    )
  ).filter((id) => id !== undefined);
  if (open.length) log(`  (${open.length} execution(s) still cleaning up after 120 s; stopping the workers anyway)`);
}

async function offer(
  client: SandboxClient,
  workers: Workers,
  n: number,
  rate: number,
  windowS: number,
): Promise<RateResult> {
  const count = Math.max(4, Math.round(rate * windowS));
  const processes = Object.fromEntries(workers.procs.map((p, i) => [`worker ${i + 1}`, p.pid!]));
  const sampler = new Sampler(STACK_DIR, 500, { ...processes, 'bench client': process.pid }).start();
  const rssPeak = workers.procs.map(() => 0);
  const rssTimer = setInterval(
    () => workers.procs.forEach((p, i) => (rssPeak[i] = Math.max(rssPeak[i], rssMiB(p.pid!)))),
    1000,
  );
  const mainThreads0 = workers.procs.map((p) => mainThreadCpuMs(p.pid!));
  const t0 = Date.now();
  const runs: Promise<Run>[] = [];
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / rate;
    await sleep(Math.max(0, due - Date.now()));
    runs.push(runOne(client, `capacity-${n}w-${rate}-${t0.toString(36)}-${i}`));
  }
  const done = await Promise.all(runs);
  started.push(...Array.from({ length: count }, (_, i) => `capacity-${n}w-${rate}-${t0.toString(36)}-${i}`));
  clearInterval(rssTimer);
  const load = sampler.stop();
  const mainThreadsMs = workers.procs.reduce((a, p, i) => a + mainThreadCpuMs(p.pid!) - mainThreads0[i], 0);
  const ms = done.map((r) => r.ms);
  const verdict = sustainedVerdict(done, rate);
  const workerCpuS = Object.keys(processes).reduce((a, k) => a + (load.cpuSeconds[k] ?? 0), 0);
  return {
    workers: n,
    offered: rate,
    executions: done.length,
    failed: done.filter((r) => !r.ok).length,
    completedPerSecond: verdict.completedPerSecond,
    p50: quantile(ms, 0.5),
    p95: quantile(ms, 0.95),
    firstHalfP50: verdict.first,
    secondHalfP50: verdict.second,
    sustained: verdict.sustained,
    ...(verdict.why ? { why: verdict.why } : {}),
    nodeBusyAvgPct: load.nodeBusyAvgPct,
    cpuAvgPct: load.cpuAvgPct,
    workerCpuMsPerExecution: (1000 * workerCpuS) / done.length,
    workerMainThreadMsPerExecution: mainThreadsMs / done.length,
    workerRssPeakMiB: rssPeak,
    limit: limitOf(load),
    restByCommand: load.restByCommand,
  };
}

/** Offers load as a window does, measuring nothing; its executions' cleanups are waited for by the next settle. */
async function warmUp(client: SandboxClient, n: number, rate: number, seconds: number): Promise<void> {
  const t0 = Date.now();
  const runs: Promise<Run>[] = [];
  for (let i = 0; i < Math.max(1, Math.round(rate * seconds)); i++) {
    await sleep(Math.max(0, t0 + (i * 1000) / rate - Date.now()));
    const id = `capacity-warmup-${n}w-${t0.toString(36)}-${i}`;
    started.push(id);
    runs.push(runOne(client, id));
  }
  const failed = (await Promise.all(runs)).filter((r) => !r.ok);
  if (failed.length) log(`  (${failed.length} warm-up execution(s) failed: ${failed[0].error})`);
}

function report(results: RateResult[], argv: string, temporalOnly: boolean, warmupS: number): string {
  const components = ['sandbox pods', 'runsc shims', 'kube-apiserver', 'etcd', 'temporal', 'kubelet', 'containerd'];
  const rows = results.map((r) => [
    r.workers,
    String(r.offered),
    fmt(r.completedPerSecond, 2),
    r.executions,
    fmt(r.p50),
    fmt(r.p95),
    r.sustained ? 'yes' : `no (${r.why})`,
    fmt(r.nodeBusyAvgPct),
    `${fmt(r.workerCpuMsPerExecution)} (${fmt(r.workerMainThreadMsPerExecution)})`,
    r.workerRssPeakMiB.map((x) => fmt(x)).join('/'),
  ]);
  const cpuRows = results.map((r) => [
    r.workers,
    String(r.offered),
    ...components.map((c) => fmt(r.cpuAvgPct[c] ?? NaN)),
    fmt(
      Object.entries(r.cpuAvgPct)
        .filter(([k]) => k.startsWith('worker '))
        .reduce((a, [, v]) => a + v, 0),
    ),
    fmt(r.cpuAvgPct['rest of node'] ?? NaN),
    Object.entries(r.restByCommand)
      .slice(0, 3)
      .map(([c, v]) => `${c} ${fmt(v)}`)
      .join(', '),
  ]);
  const best = (n: number) =>
    results
      .filter((r) => r.workers === n && r.sustained)
      .sort((a, b) => b.completedPerSecond - a.completedPerSecond)[0];
  const summary = [...new Set(results.map((r) => r.workers))].map((n) => {
    const b = best(n);
    return [
      n,
      b ? fmt(b.completedPerSecond, 2) : '-',
      b ? `${fmt(b.p50)} / ${fmt(b.p95)}` : '-',
      b ? fmt(b.workerCpuMsPerExecution) : '-',
      b ? b.workerRssPeakMiB.map((x) => fmt(x)).join('/') : '-',
      results.filter((r) => r.workers === n && !r.sustained).map((r) => `${String(r.offered)}/s: ${r.limit}`)[0] ??
        'not reached',
    ];
  });
  return [
    `# Capacity (${new Date().toISOString()})`,
    '',
    `\`npm run bench:capacity${argv ? ` -- ${argv}` : ''}\`; print(1), ${
      temporalOnly
        ? "the workers' Temporal part alone (run and cleanup steps that touch no cluster: scripts/bench/temporal-only-worker.ts)"
        : 'cold sandboxes (requests cpu 10m, memory 32Mi)'
    }, open loop${
      warmupS > 0 ? `, measured after ${warmupS} s of unmeasured load at the first rate` : ', measured from the start'
    }. Worker CPU: every thread of the worker processes (JavaScript, the Temporal core's Rust threads, V8's GC and compiler threads); in brackets, their main threads.`,
    '',
    '## Sustained, per worker count',
    '',
    table(
      [
        [
          'workers',
          'executions/s sustained',
          'p50 / p95 ms there',
          'worker CPU ms/execution',
          'worker RSS MiB',
          'first rate not sustained: where the limit is',
        ],
        ...summary,
      ],
      ['r', 'r', 'r', 'r', 'r', 'l'],
    ),
    '',
    '## Every rate',
    '',
    table(
      [
        [
          'workers',
          'offered/s',
          'completed/s',
          'n',
          'p50 ms',
          'p95 ms',
          'sustained',
          'node CPU %',
          'worker CPU ms/exec (main thread)',
          'worker RSS MiB (peak)',
        ],
        ...rows,
      ],
      ['r', 'r', 'r', 'r', 'r', 'r', 'l', 'r', 'r', 'r'],
    ),
    '',
    '## CPU by component (% of one core, averaged over the window)',
    '',
    table([['workers', 'offered/s', ...components, 'workers', 'rest of node', 'rest: top commands'], ...cpuRows]),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      workers: { type: 'string', default: '1,2,4' },
      rates: { type: 'string', default: '0.5,0.75,1,1.25,1.5,2' },
      window: { type: 'string', default: '40' },
      warmup: { type: 'string', default: '40' },
      out: { type: 'string', default: path.join(PROJECT_ROOT, 'bench-results') },
      'cpu-prof': { type: 'string' },
      'temporal-only': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    log(USAGE);
    return;
  }
  const list = (s: string) => s.split(',').map(Number);
  const workerCounts = list(values.workers);
  const rates = list(values.rates);
  const windowS = Number(values.window);
  const warmupS = Number(values.warmup);
  if ([...workerCounts, ...rates, windowS].some((x) => !(x > 0)) || !(warmupS >= 0))
    throw new Error(`bad arguments\n${USAGE}`);
  const sides = applyStackEnv();
  if (!sides.kube || !sides.temporal) throw new Error('the capacity bench samples the local stack: it needs it');
  log('building dist/ (npm run build)');
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: PROJECT_ROOT, stdio: 'inherit' });
  const logDir = path.join(STACK_DIR, 'logs');
  const kube = createKube(loadKubeConfig(process.env.DS_ADMIN_KUBECONFIG ?? process.env.KUBECONFIG));
  const results: RateResult[] = [];
  for (const n of workerCounts) {
    const taskQueue = `capacity-${process.pid}-${n}`;
    log(`\n${n} worker process(es) on ${taskQueue}`);
    const workers = await startWorkers(n, taskQueue, logDir, values['cpu-prof'], values['temporal-only']);
    const { policy } = loadConfig({ ...process.env, ...SANDBOX_ENV });
    const client = await SandboxClient.connect({ taskQueue, policy });
    try {
      for (let i = 0; i < 3; i++) await runOne(client, `capacity-warmup-${n}-${Date.now().toString(36)}-${i}`);
      if (warmupS > 0) {
        log(`  warming up: ${String(rates[0])}/s for ${warmupS} s, not measured`);
        await warmUp(client, n, rates[0], warmupS);
      }
      for (const rate of rates) {
        await settle(kube, policy.namespace, log, { keepPools: true });
        const r = await offer(client, workers, n, rate, windowS);
        results.push(r);
        log(
          `  ${String(rate)}/s offered: ${fmt(r.completedPerSecond, 2)}/s completed, p50 ${fmt(r.p50)} p95 ${fmt(r.p95)} ms, node ${fmt(r.nodeBusyAvgPct)}% busy, ` +
            `workers ${fmt(r.workerCpuMsPerExecution)} CPU ms/exec, ${r.sustained ? 'sustained' : `NOT sustained (${r.why})`}; ${r.limit}`,
        );
        if (!r.sustained) break;
      }
    } finally {
      // Cleanups run after the results: the workers stay until they are done, or they would be left waiting for one.
      await drain(client).catch((err: unknown) => log(`  (could not wait for cleanups: ${String(err)})`));
      await client.close();
      await workers.stop();
    }
  }
  const md = report(results, process.argv.slice(2).join(' '), values['temporal-only'], warmupS);
  mkdirSync(values.out, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  writeFileSync(path.join(values.out, `capacity-${stamp}.json`), JSON.stringify(results, null, 2));
  writeFileSync(path.join(values.out, `capacity-${stamp}.md`), md);
  log(`\n${md}`);
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}

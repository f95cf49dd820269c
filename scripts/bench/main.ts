/**
 * npm run bench [-- --quick]: what durable-sandbox costs over the least a direct Kubernetes client must do.
 *
 * 1. Rounds: for each workload, two floors and ours, interleaved floor, fast, ours, floor, fast, ours … so drift
 *    hits all three: the floor (scripts/bench/floor.ts: the same ConfigMap and Job, no Temporal, result after the
 *    pod is gone), the fast floor (scripts/bench/fast-floor.ts: follows the log to the trailer, returns, deletes in
 *    the background) and ours (SandboxClient.executeCode with the real worker in this process). Each run's
 *    background cleanup finishes before the next run starts. Latency, per-round ratios and overhead, phase medians,
 *    API requests per execution (from the apiserver's audit log), Temporal history size, and this process's CPU.
 * 2. Scaling: bursts of concurrent print(1) executions, each side for each size, with sandbox requests of
 *    cpu 10m / memory 32Mi (so 50 pods fit on the node), sampling node and per-process CPU and the worker's RSS.
 *
 * Needs the local stack (npm run stack:up) or KUBECONFIG/DS_ADMIN_KUBECONFIG and TEMPORAL_ADDRESS. Writes
 * bench-results/bench-<time>.json and .md. Ctrl-C stops it and deletes whatever it created.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { createKube } from '../../activities/kube';
import { loadConfig } from '../../worker/config';
import { loadKubeConfig } from '../../worker/connect';
import { DEFAULT_LANGUAGE } from '../../core/languages';
import { applyStackEnv, PROJECT_ROOT, STACK_DIR } from '../../cli/local-stack';
import { readLauncherSource } from '../../worker/worker';
import { auditCursor, countRequests, readSince, type RequestCounts } from './audit';
import { runFastFloor } from './fast-floor';
import { runFloor, type FloorDeps } from './floor';
import { Leftovers } from './leftovers';
import { idlePodCost } from './idle';
import {
  historyCost,
  poolReady,
  runOurs,
  startBenchWorker,
  workflowBundle,
  type BenchWorker,
  type HistoryCost,
} from './ours';
import {
  costTable,
  durationTable,
  latencyTable,
  phaseTable,
  saturation,
  scalingPhaseTable,
  scalingTable,
  summarizeBursts,
  burstRatios,
  burstRatioTable,
  summarizePairs,
  twinLines,
  twinRatios,
  type Burst,
  type Pair,
} from './report';
import { Sampler } from './sampler';
import { settle, untilQuiet } from './settle';
import { benchDisplays } from './displays';
import { benchEgress } from './egress';
import { benchSessions } from './sessions';
import { SIDES, type RunRecord, type Side } from './types';
import { WORKLOADS, workload, type Workload } from './workloads';

const USAGE = `usage: npm run bench [-- options]
  --quick              few pairs (4 per workload) and bursts 1 and 10 only (under 5 minutes)
  --pairs N            pairs per workload (default 15; 4 with --quick)
  --bursts 1,10,25,50  burst sizes for the scaling part (default 1,10,25,50; 1,10 with --quick)
  --burst-rounds N     bursts of each size per side, the sides taking turns (default 1): with N > 1 the
                       burst ratios are the medians over the rounds, steadier than one burst each
  --workloads a,b      workloads for the pairs: ${WORKLOADS.map((w) => w.key).join(', ')} (default all)
  --no-pairs           skip the pairs
  --no-scaling         skip the scaling bursts
  --no-sessions        skip the sessions (print(1) in an open session vs exec, warm and cold; resume and restore)
  --no-egress          skip egress (a 1 MB download through the gateway vs a direct route; an allow-list on a warm print(1))
  --no-displays        skip display data and TypeScript (display capture on a session's print(1); a 100 KB PNG; TS vs JS)
  --out DIR            where to write the results (default bench-results/)`;

/** The scaling part's sandbox requests: 50 pods of the default 100m would not fit on a 2-core node. */
const SCALING_ENV = { DS_REQUEST_CPU: '10m', DS_REQUEST_MEMORY: '32Mi' };
/** How busy (% of the node) the node may still be when a warm burst starts after its pool is ready. */
const QUIET_NODE_PCT = 35;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (s: string) => process.stdout.write(`${s}\n`);
/** Set once a signal came: the signal handler cleans up and exits, nothing else may exit first. */
let stopping: Promise<void> | undefined;
class Interrupted extends Error {}

function machine(): string {
  const osName = /PRETTY_NAME="?([^"\n]+)"?/.exec(safeRead('/etc/os-release'))?.[1] ?? os.platform();
  const mem = Math.round(os.totalmem() / 2 ** 30);
  const platform = /platform\s*=\s*"(\w+)"/.exec(safeRead(path.join(PROJECT_ROOT, 'scripts', 'stack', 'up.sh')))?.[1];
  return `${os.cpus().length} cores, ${mem} GiB, ${osName}, kernel ${os.release()}, gVisor ${platform ?? '?'}, node ${process.version}`;
}

function safeRead(f: string): string {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      pairs: { type: 'string' },
      bursts: { type: 'string' },
      'burst-rounds': { type: 'string', default: '1' },
      workloads: { type: 'string' },
      'no-pairs': { type: 'boolean', default: false },
      'no-scaling': { type: 'boolean', default: false },
      'no-sessions': { type: 'boolean', default: false },
      'no-egress': { type: 'boolean', default: false },
      'no-displays': { type: 'boolean', default: false },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    log(USAGE);
    return;
  }
  const quick = values.quick;
  const pairsPerWorkload = Number(values.pairs ?? (quick ? 4 : 15));
  const burstSizes = (values.bursts ?? (quick ? '1,10' : '1,10,25,50')).split(',').map(Number);
  const burstRounds = Number(values['burst-rounds']);
  const workloads: Workload[] = values.workloads ? values.workloads.split(',').map(workload) : WORKLOADS;
  if (
    !Number.isInteger(pairsPerWorkload) ||
    pairsPerWorkload < 1 ||
    !Number.isInteger(burstRounds) ||
    burstRounds < 1 ||
    burstSizes.some((n) => !Number.isInteger(n) || n < 1)
  ) {
    throw new Error(`bad --pairs, --bursts or --burst-rounds\n${USAGE}`);
  }

  applyStackEnv();
  Runtime.install({ logger: new DefaultLogger('WARN'), shutdownSignals: [] });
  const config = loadConfig();
  const namespace = config.policy.namespace;
  const adminKubeconfig = process.env.DS_ADMIN_KUBECONFIG ?? process.env.KUBECONFIG;
  const kube = createKube(loadKubeConfig(adminKubeconfig));
  const launcherSource = readLauncherSource();
  const auditFile = path.join(STACK_DIR, 'logs', 'audit.log');
  const outDir = path.resolve(values.out ?? path.join(PROJECT_ROOT, 'bench-results'));
  const started = new Date();
  const tag = Date.now().toString(36);
  let seq = 0;
  const leftovers = new Leftovers(kube, namespace);
  const newId = (side: Side): string => {
    const id = `bench-${side}-${tag}-${seq++}`;
    leftovers.track(id);
    return id;
  };

  // Interruption: stop starting things, terminate our running workflows (so no new attempt is made), stop the
  // workers, then delete every object of the bench's executions.
  let aborted = false;
  const workers = new Set<BenchWorker>();
  const running = new Map<string, BenchWorker>();
  const shutdown = async (why: string): Promise<void> => {
    aborted = true;
    log(
      `\n${why}: terminating ${running.size} running workflow(s), stopping the worker, deleting what the bench created…`,
    );
    const terminate = () =>
      Promise.all(
        [...running].map(([id, w]) =>
          w.temporal.workflow
            .getHandle(id)
            .terminate('bench interrupted')
            .catch(() => undefined),
        ),
      );
    await terminate();
    await Promise.race([Promise.all([...workers].map((w) => w.stop())), sleep(15_000)]);
    // Again, for a start that was still on its way the first time.
    await terminate();
    await sleep(1000);
    const swept = await leftovers.sweepUntilClean(90_000);
    log(`deleted ${swept.jobs} Job(s), ${swept.configMaps} ConfigMap(s), ${swept.pods} pod(s) of the bench`);
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      if (stopping) {
        log('second signal: exiting without waiting for cleanup');
        process.exit(130);
      }
      stopping = shutdown(sig).then(
        () => process.exit(130),
        (err) => {
          log(`cleanup failed: ${String(err)}`);
          process.exit(131);
        },
      );
    });
  }

  const floorDeps = (policy = config.policy): FloorDeps => ({ kube, policy, launcherSource, aborted: () => aborted });
  const check = () => {
    if (aborted) throw new Interrupted('interrupted');
  };
  /** One run of a side; `background` is its cleanup after the result (nothing for the floor, which waits for it). */
  type Run = { record: RunRecord; background: Promise<void> };
  const floor = async (w: Workload, deps: FloorDeps): Promise<Run> => ({
    record: await runFloor(deps, w, newId('floor')),
    background: Promise.resolve(),
  });
  const fast = (w: Workload, deps: FloorDeps): Promise<Run> => runFastFloor(deps, w, newId('fast'));
  const ours = async (w: Workload, worker: BenchWorker, name: 'ours' | 'warm' = 'ours'): Promise<Run> => {
    check();
    const id = newId(name);
    running.set(id, worker);
    try {
      const run = await runOurs(worker, w, id, name);
      return { record: run.record, background: run.background.finally(() => running.delete(id)) };
    } catch (err) {
      running.delete(id);
      throw err;
    }
  };
  /** Runs a side and waits for its background cleanup too, so the next measurement starts on a quiet cluster. */
  const alone = async (run: Promise<Run>): Promise<RunRecord> => {
    const r = await run;
    await r.background;
    return r.record;
  };
  const side = (name: Side, w: Workload, deps: FloorDeps, worker: BenchWorker, warm: BenchWorker): Promise<Run> =>
    name === 'floor'
      ? floor(w, deps)
      : name === 'fast'
        ? fast(w, deps)
        : name === 'ours'
          ? ours(w, worker)
          : ours(w, warm, 'warm');
  /** A warm run of the warm side: waits (unmeasured) until the pool has a ready pod. */
  const warmRun = async (w: Workload, warm: BenchWorker, ready = 1): Promise<Run> => {
    const n = await poolReady(warm, kube, launcherSource, ready);
    if (n < ready) log(`the warm pool has ${n} of ${ready} pods ready after 120 s`);
    return ours(w, warm, 'warm');
  };
  const show = (r: RunRecord) => (r.ok ? `${r.latencyMs} ms` : `FAILED (${r.status}: ${r.error})`);

  log(`durable-sandbox bench${quick ? ' --quick' : ''}: ${started.toISOString()}; ${machine()}`);
  log(
    `namespace ${namespace}, image ${config.policy.images.python}, runtimeClass ${config.policy.runtimeClassName || '-'}`,
  );
  await kube.core.listNamespacedPod({ namespace, limit: 1 });
  log('bundling the workflow code…');
  await workflowBundle();

  const result: Record<string, unknown> = {
    startedAt: started.toISOString(),
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine: machine(),
    quick,
    namespace,
    image: config.policy.images.python,
    floorKubeconfig: adminKubeconfig,
    workerKubeconfig: config.kubeconfig,
    historyBytes: 'temporal.api.history.v1.History protobuf-encoded (@temporalio/proto), as fetchHistory() returns it',
  };
  const md: string[] = [];
  const section = (title: string, body: string) => {
    log(`\n## ${title}\n\n${body}`);
    md.push(`## ${title}\n\n${body}\n`);
  };

  try {
    // ---------------------------------------------------------------------------------------------- pairs
    if (!values['no-pairs']) {
      const worker = await startBenchWorker();
      workers.add(worker);
      const warm = await startBenchWorker({ DS_WARM_POOL_SIZE: '2' });
      workers.add(warm);
      log(
        `workers on task queues ${worker.config.temporal.taskQueue} (cold) and ${warm.config.temporal.taskQueue} (warm pool of 2); warming up (one run of each side; not counted)…`,
      );
      await poolReady(warm, kube, launcherSource, 2);
      for (const name of SIDES) {
        const r = await alone(
          name === 'warm' ? warmRun(WORKLOADS[0], warm) : side(name, WORKLOADS[0], floorDeps(), worker, warm),
        );
        if (!r.ok) log(`warm-up ${r.side} failed: ${r.status}: ${r.error}`);
      }
      const cursor = auditCursor(auditFile);
      const pairs: Pair[] = [];
      const shared0 = { ours: sharedCounts(worker), warm: sharedCounts(warm) };
      const cpuPairs0 = process.cpuUsage();
      for (let i = 0; i < pairsPerWorkload; i++) {
        for (const w of workloads) {
          check();
          const f = await alone(floor(w, floorDeps()));
          const ff = await alone(fast(w, floorDeps()));
          const o = await alone(ours(w, worker));
          const wr = await alone(warmRun(w, warm));
          check();
          pairs.push({ workload: w.key, floor: f, fast: ff, ours: o, warm: wr });
          log(
            `round ${i + 1}/${pairsPerWorkload} ${w.label.padEnd(12)} floor ${show(f).padEnd(10)} fast ${show(ff).padEnd(10)} ours ${show(o).padEnd(10)} warm ${show(wr)}`,
          );
        }
      }
      const cpuPairs = process.cpuUsage(cpuPairs0);
      const shared = {
        ours: perExecution(sharedCounts(worker), shared0.ours, pairs.length),
        warm: perExecution(sharedCounts(warm), shared0.warm, pairs.length),
      };
      // Let the apiserver write its last events (watch ends are logged when they close).
      await sleep(3000);
      const ids = pairs.flatMap((p) => SIDES.map((name) => p[name].executionId));
      let requests = new Map<string, RequestCounts>();
      const pods = new Map(
        pairs.flatMap((p) => SIDES.map((name) => [p[name].executionId, p[name].pod] as const)).filter(([, pod]) => pod),
      ) as Map<string, string>;
      if (cursor) requests = countRequests(readSince(cursor), ids, namespace, pods);
      else log(`no audit log at ${auditFile}: API requests not counted`);
      const histories = new Map<string, HistoryCost>();
      for (const id of pairs.flatMap((p) => [p.ours.executionId, p.warm.executionId])) {
        try {
          histories.set(id, await historyCost(worker.temporal, id));
        } catch (err) {
          log(`history of ${id}: ${String(err)}`);
        }
      }
      // What a ready pod costs while it waits, from its own cgroup.
      await poolReady(warm, kube, launcherSource, 2);
      const idle = await idlePodCost(kube, warm, launcherSource, 10_000);
      result.idleWarmPod = idle;
      await worker.close();
      workers.delete(worker);
      await warm.close();
      workers.delete(warm);
      const summary = summarizePairs(pairs, requests, histories);
      const twins = twinRatios(summary);
      result.pairs = {
        perWorkload: pairsPerWorkload,
        processCpuMs: (cpuPairs.user + cpuPairs.system) / 1000,
        summary,
        twins,
        records: pairs,
        requests: Object.fromEntries(requests),
        histories: Object.fromEntries(histories),
        shared,
      };
      section(
        `End-to-end latency, ms (${pairsPerWorkload} interleaved pairs per workload)`,
        `${latencyTable(summary)}\n\nratio = ours/floor per pair; overhead = ours − floor per pair (ms). ` +
          `floor: create ConfigMap + Job, watch the pod, read the log, delete, wait until the pod is gone. ` +
          `ours: SandboxClient.executeCode until the result is in hand (cleanup included).`,
      );
      section(
        'In-sandbox run time (durationMs), ms',
        `${durationTable(summary)}\n\nThe program's run time by the launcher's clock in the sandbox (the result's durationMs): ` +
          `from starting the program to having read all its output.` +
          (twins.length ? ` The same work done two ways, ratio of the medians:\n\n${twinLines(twins)}` : ''),
      );
      section(
        'Phases, median ms per step',
        `${phaseTable(summary)}\n\ncall = client call made; result = result in hand (floor: pod gone). ` +
          `outputCollected→cleanedUp: cleanup (floor: before the result; fast and ours: after it, in the background). ` +
          `containerStarted/containerFinished are the launcher's own clock on both sides; the other marks are when each ` +
          `client saw the event (floor: Date.now() in its watch; ours: the workflow timeline).`,
      );
      section(
        'Cost per execution (medians)',
        `${costTable(summary)}\n\nAPI requests from the apiserver audit log, client = the floor's admin user or the worker's ` +
          `ServiceAccount; cluster = kubelet, controllers and garbage collector on the same objects (pod creation by the ` +
          `Job controller is not attributable by name and is left out on both sides). History bytes: protobuf-encoded ` +
          `temporal.api.history.v1.History. CPU: this process (worker + client for ours, client for the floor; the idle ` +
          `worker's polling falls on the floor's side).`,
      );
      const detail = summary
        .map(
          (s) =>
            `- ${s.workload}: ${SIDES.map((n) => `${n} ${JSON.stringify(s.costs[n].clientRequestsByCall)}`).join('; ')}`,
        )
        .join('\n');
      section('Client requests per execution by call (medians)', detail);
      section(
        "The worker's connections and pod cache",
        (['ours', 'warm'] as const)
          .map(
            (n) =>
              `- ${n}: ${shared[n].connections.toFixed(2)} new connections to the apiserver (TLS handshakes) per execution; ` +
              `${shared[n].cacheRequests.toFixed(2)} list/watch requests of the worker's pod cache per execution`,
          )
          .join('\n') +
          `\n\nAll of a worker's requests, watches, log streams and attaches share one keep-alive connection pool, and its ` +
          `executions' watches, cleanups and claims read one pod cache (a list and one watch for the namespace's sandbox ` +
          `pods): neither is counted in the requests per execution above.`,
      );
      const cluster = summary
        .map(
          (s) =>
            `- ${s.workload}: ${SIDES.map((n) => `${n} ${JSON.stringify(s.costs[n].clusterRequestsByUser)}`).join('; ')}`,
        )
        .join('\n');
      section('Cluster requests per execution by component (medians)', cluster);
      const hist = summary
        .map((s) => `- ${s.workload}: ${JSON.stringify(s.costs.ours.historyEventsByType)}`)
        .join('\n');
      section('History events per execution by type (medians)', hist);
      section(
        'Idle cost of one warm pod',
        idle.pods
          ? `${idle.pods} ready pods sampled over ${idle.seconds} s from their pod cgroups (gVisor sandbox and launcher): ` +
              `CPU ${idle.cpuMilliCoresPerPod.toFixed(1)} millicores per pod on average; memory ${idle.memoryMiBPerPod.toFixed(1)} MiB ` +
              `per pod (cgroup usage), ${idle.workingSetMiBPerPod.toFixed(1)} MiB working set. The containerd shim of each sandbox ` +
              `runs outside the pod's cgroup and is not counted.`
          : `no pod cgroup found under ${'/sys/fs/cgroup'} (${idle.note})`,
      );
    }

    // ------------------------------------------------------------------------------------------- sessions
    if (!values['no-sessions']) {
      const cold = await startBenchWorker();
      workers.add(cold);
      const warm = await startBenchWorker({ DS_WARM_POOL_SIZE: '1' });
      workers.add(warm);
      log(`\nsessions: print(1) in an open session vs kubectl exec, warm and cold; ${pairsPerWorkload} rounds`);
      const sessions = await benchSessions({
        kube,
        namespace,
        adminKubeconfig,
        cold,
        warm,
        warmReady: async () => {
          const n = await poolReady(warm, kube, launcherSource, 1);
          if (n < 1) log('the warm pool has no ready pod after 120 s');
        },
        newId,
        rounds: pairsPerWorkload,
        log,
        check,
      });
      result.sessions = {
        summary: sessions.summary,
        ratios: sessions.ratios,
        recoveries: sessions.recoveries,
        forks: sessions.forks,
        big: sessions.big,
      };
      section(`Sessions: print(1) in an open session (${pairsPerWorkload} interleaved rounds)`, sessions.markdown);
      await cold.close();
      workers.delete(cold);
      await warm.close();
      workers.delete(warm);
    }

    // --------------------------------------------------------------------------------------------- egress
    if (!values['no-egress']) {
      log(
        `\negress: a 1 MB download through the gateway vs a direct route; an allow-list on a warm print(1); ${pairsPerWorkload} rounds`,
      );
      const egress = await benchEgress({
        kube,
        launcherSource,
        floorDeps: () => floorDeps(),
        rounds: pairsPerWorkload,
        newId,
        log,
        check,
        track: (w) => workers.add(w),
      });
      result.egress = egress.summary;
      section(
        `Egress: a 1 MB download, and an allow-list on a warm print(1) (${pairsPerWorkload} interleaved rounds)`,
        egress.markdown,
      );
    }

    // ------------------------------------------------------------------------------------------- displays
    if (!values['no-displays']) {
      log(
        `\ndisplays: display capture on a session's print(1); a 100 KB PNG; TypeScript vs JavaScript; ${pairsPerWorkload} rounds`,
      );
      const displays = await benchDisplays({
        rounds: pairsPerWorkload,
        newId,
        log,
        check,
        track: (w) => workers.add(w),
      });
      result.displays = displays.summary;
      section(`Display data and TypeScript (${pairsPerWorkload} interleaved rounds)`, displays.markdown);
    }

    // -------------------------------------------------------------------------------------------- scaling
    if (!values['no-scaling']) {
      const w = WORKLOADS[0];
      const worker = await startBenchWorker(SCALING_ENV);
      workers.add(worker);
      const policy = loadConfig({ ...process.env, ...SCALING_ENV }).policy;
      const deps = floorDeps(policy);
      log(
        `\nscaling: bursts of ${burstSizes.join(', ')} concurrent ${w.label}; sandbox requests cpu ${policy.requestCpu}, memory ${policy.requestMemory} (both sides)`,
      );
      await alone(ours(w, worker));
      const bursts: Burst[] = [];
      // Rounds of every side in turn, so the node's drift over the bench falls on all sides alike.
      const rounds = burstSizes.flatMap((size) =>
        Array.from({ length: burstRounds }, (_, round) => SIDES.map((name) => ({ size, round, name }))),
      );
      for (const turn of rounds) {
        for (const { size, round, name } of turn) {
          check();
          // The earlier burst's pods (a warm pool's too) gone first: their teardown would land on this burst.
          await settle(kube, namespace, log);
          // Gone from the API is not yet done on the node: the runtime tears sandboxes down for a few seconds more.
          await untilQuiet(QUIET_NODE_PCT);
          check();
          // The warm side: a pool of the burst's size, ready before the burst starts.
          let warm: BenchWorker | undefined;
          if (name === 'warm') {
            // A pool for the burst's language only: another language's idle pods would share the node with it.
            warm = await startBenchWorker({
              ...SCALING_ENV,
              DS_WARM_POOL_SIZE: '0',
              [`DS_WARM_POOL_SIZE_${DEFAULT_LANGUAGE.toUpperCase()}`]: String(size),
            });
            workers.add(warm);
            const ready = await poolReady(warm, kube, launcherSource, size);
            if (ready < size) log(`the warm pool has ${ready} of ${size} pods ready after 120 s`);
            // A pool is there before its requests come: the tail of its pods' start (their status updates, the
            // runtime's bookkeeping) is not part of the burst.
            const quiet = await untilQuiet(QUIET_NODE_PCT);
            log(
              `  the pool ready: the node ${quiet.firstPct.toFixed(0)}% busy in the next second, ${quiet.busyPct.toFixed(0)}% busy ${(quiet.waitedMs / 1000).toFixed(0)} s later${quiet.busyPct > QUIET_NODE_PCT ? ' (not quiet yet; going on)' : ''}`,
            );
            check();
          }
          // The node's load just before the burst (other users of the machine, a pool's idle pods), for comparison.
          const before = new Sampler(STACK_DIR).start();
          await sleep(3000);
          const baseline = before.stop();
          check();
          const sampler = new Sampler(STACK_DIR).start();
          const cpu0 = process.cpuUsage();
          const t0 = Date.now();
          const runs = await Promise.all(
            Array.from({ length: size }, () => side(name, w, deps, worker, warm ?? worker)),
          );
          const records = runs.map((r) => r.record);
          check();
          const wallMs = Date.now() - t0;
          const cpu = process.cpuUsage(cpu0);
          const load = sampler.stop();
          await Promise.all(runs.map((r) => r.background));
          // How soon the pool is whole again (from the burst's start): what a refill policy must not slow down.
          let poolRefilledMs: number | undefined;
          if (warm) {
            const refilled = await poolReady(warm, kube, launcherSource, size);
            if (refilled >= size) poolRefilledMs = Date.now() - t0;
            log(
              `  the pool was whole again ${poolRefilledMs !== undefined ? `${(poolRefilledMs / 1000).toFixed(1)} s after the burst started` : `not within 120 s (${refilled}/${size})`}`,
            );
          }
          if (warm) {
            await warm.close();
            workers.delete(warm);
          }
          bursts.push({
            size,
            round,
            side: name,
            workload: w.key,
            wallMs,
            records,
            load,
            baseline,
            cpuMs: (cpu.user + cpu.system) / 1000,
            ...(poolRefilledMs !== undefined ? { poolRefilledMs } : {}),
          });
          const ok = records.filter((r) => r.ok).length;
          log(
            `burst ${String(size).padStart(2)}${burstRounds > 1 ? ` #${round + 1}` : ''} ${name.padEnd(5)} ok ${ok}/${size} in ${(wallMs / 1000).toFixed(1)} s, node CPU ${load.nodeBusyAvgPct.toFixed(0)}%, RSS peak ${load.rssPeakMiB.toFixed(0)} MiB`,
          );
          for (const r of records.filter((x) => !x.ok).slice(0, 3))
            log(`  failed ${r.executionId}: ${r.status}: ${r.error}`);
        }
      }
      await worker.close();
      workers.delete(worker);
      const summary = summarizeBursts(bursts);
      const ratios = burstRatios(summary);
      result.scaling = {
        env: SCALING_ENV,
        workload: w.key,
        rounds: burstRounds,
        summary,
        ratios,
        records: bursts.map((b) => ({ ...b, load: undefined })),
      };
      section(
        `Scaling: concurrent bursts of ${w.label}, one worker (sandbox requests cpu ${SCALING_ENV.DS_REQUEST_CPU}, memory ${SCALING_ENV.DS_REQUEST_MEMORY})`,
        `${scalingTable(summary)}\n\nexec/s = successful executions / burst wall time. CPU ms/exec = this process's CPU ` +
          `over the burst / burst size. node CPU before = the 3 s just before the burst (what others ran). RSS = this process (worker and client together), sampled every 500 ms. Load ` +
          `columns: average CPU over the burst in % of one core; sandbox pods = the kubepods cgroup (every pod on the ` +
          `node, gVisor sandboxes included); runsc shims = containerd-shim-runsc-v1 and runsc CLI processes (outside the ` +
          `pods' cgroups, sampled every 500 ms); rest of node = node busy time not in the named processes: other users of this ` +
          `machine, and processes too short-lived for the sampler (runsc calls, CNI plugins) plus interrupts.`,
      );
      section(
        'Scaling: bursts against the fast floor',
        `${burstRatioTable(ratios)}\n\nEach round runs one burst per side, one after the other; a ratio compares the p50s of ` +
          `one round's bursts, and the median is over the rounds (--burst-rounds).`,
      );
      section('Scaling: phases, median ms per step (all rounds)', scalingPhaseTable(bursts));
      const refills = bursts.filter((b) => b.side === 'warm');
      if (refills.length)
        section(
          'Scaling: the warm pool whole again',
          refills
            .map(
              (b) =>
                `- burst ${b.size}: ${b.poolRefilledMs !== undefined ? `${(b.poolRefilledMs / 1000).toFixed(1)} s` : 'not within 120 s'} from the burst's start until the pool had ${b.size} ready pods again`,
            )
            .join('\n'),
        );
      section(
        'What saturates first',
        saturation(summary)
          .map((l) => `- ${l}`)
          .join('\n'),
      );
    }
  } finally {
    if (aborted) await stopping;
    const swept = await leftovers.sweepUntilClean(60_000).catch((err) => {
      log(`leftover check failed: ${String(err)}`);
      return undefined;
    });
    if (swept) {
      result.leftovers = swept;
      log(
        `\nleftovers after the bench: ${swept.jobs} Job(s), ${swept.configMaps} ConfigMap(s), ${swept.pods} pod(s)${swept.jobs + swept.configMaps + swept.pods ? ' (deleted)' : ''}`,
      );
    }
  }

  result.finishedAt = new Date().toISOString();
  mkdirSync(outDir, { recursive: true });
  const base = path.join(outDir, `bench-${started.toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
  const header = `# durable-sandbox bench ${started.toISOString()}\n\n${String(result.command)}; ${machine()}; took ${((Date.now() - started.getTime()) / 60000).toFixed(1)} min\n\n`;
  writeFileSync(`${base}.md`, header + md.join('\n'));
  log(`\nwrote ${base}.json and ${base}.md (${((Date.now() - started.getTime()) / 60000).toFixed(1)} min)`);
}

main().then(
  () => {
    if (!stopping) process.exit(0);
  },
  (err) => {
    // After a signal, the handler finishes the cleanup and exits.
    if (stopping) return;
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);

function sharedCounts(w: BenchWorker): { connections: number; cacheRequests: number } {
  return { connections: w.kube.connections?.() ?? 0, cacheRequests: w.kube.pods?.requests ?? 0 };
}

function perExecution(
  now: { connections: number; cacheRequests: number },
  before: { connections: number; cacheRequests: number },
  executions: number,
): { connections: number; cacheRequests: number } {
  const n = Math.max(1, executions);
  return {
    connections: (now.connections - before.connections) / n,
    cacheRequests: (now.cacheRequests - before.cacheRequests) / n,
  };
}

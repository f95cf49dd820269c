/**
 * The worker's Temporal part alone, for `npm run bench:capacity -- --temporal-only`: the real worker (same options,
 * same executeCode workflow, same activity proxies, timeouts, heartbeat throttle and update) whose run and cleanup
 * steps touch no cluster. The run step heartbeats as a cold print(1)'s does (at the start, then as the pod
 * progresses and its output arrives, 300 ms apart) and returns what one returns; cleanup returns at once. The CPU
 * this process spends per execution is what Temporal costs our worker, whatever the sandbox.
 */
import { Context } from '@temporalio/activity';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { createKube } from '../../activities/kube';
import { applyStackEnv } from '../../cli/local-stack';
import type { AttemptSpec, CleanupResult, RunHeartbeat, RunResult } from '../../core/attempt';
import { loadConfig } from '../../worker/config';
import { connectTemporal, loadKubeConfig } from '../../worker/connect';
import { serveHealth } from '../../worker/health';
import { createSandboxWorker, readLauncherSource, readWorkspaceSource } from '../../worker/worker';

/**
 * When a cold print(1)'s run step reports something new, from its start (ms): Job made, scheduled, started, output.
 * DS_BENCH_HEARTBEATS=N sends the first N only (what the heartbeats cost).
 */
const BEATS_MS = [0, 300, 600, 900, 1200].slice(0, Number(process.env.DS_BENCH_HEARTBEATS ?? 5));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runSandbox(spec: AttemptSpec): Promise<RunResult> {
  const ctx = Context.current();
  const t0 = Date.now();
  const pod = `${spec.executionId.slice(0, 40)}-${spec.attempt}-x7k2p`;
  for (const [i, at] of BEATS_MS.entries()) {
    await sleep(Math.max(0, t0 + at - Date.now()));
    const beat: RunHeartbeat = {
      attempt: spec.attempt,
      sandbox: 'cold',
      acquiredAt: t0,
      progress: { podName: pod, nodeName: 'node', ...(i > 0 ? { scheduledAt: t0 + 300 } : {}) },
      ...(i === BEATS_MS.length - 1
        ? { output: { stdout: { text: '1\n', end: 2 }, stderr: { text: '', end: 0 } } }
        : {}),
    };
    ctx.heartbeat(beat);
  }
  await sleep(Math.max(0, t0 + 1400 - Date.now()));
  const now = Date.now();
  const stream = (text: string) => ({
    text,
    totalBytes: text.length,
    capturedBytes: text.length,
    truncated: false,
  });
  return {
    end: { kind: 'finished', exitCode: 0, reason: 'Completed', oomKilled: false },
    progress: {
      podName: pod,
      nodeName: 'node',
      scheduledAt: t0 + 300,
      containerStartedAt: t0 + 600,
      containerFinishedAt: now - 100,
    },
    acquiredAt: t0,
    sandbox: 'cold',
    output: {
      available: true,
      stdout: stream('1\n'),
      stderr: stream(''),
      outputFiles: [],
      trailer: {
        exitCode: 0,
        timedOut: false,
        terminated: false,
        startedAt: t0 + 700,
        finishedAt: now - 150,
        error: null,
      },
      at: now,
    },
  };
}

async function cleanup(): Promise<CleanupResult> {
  return { jobDeleted: true, configMapDeleted: true, podsRemaining: 0, at: Date.now() };
}

async function main(): Promise<void> {
  applyStackEnv();
  const config = loadConfig();
  Runtime.install({ logger: new DefaultLogger(config.logLevel), shutdownSignals: ['SIGINT', 'SIGTERM'] });
  const connection = await connectTemporal(config.temporal);
  const real = createActivities({
    kube: createKube(loadKubeConfig(config.kubeconfig)),
    policy: config.policy,
    launcherSource: readLauncherSource(),
    workspaceSource: readWorkspaceSource(),
  });
  const worker = await createSandboxWorker(
    config,
    connection,
    { activities: { ...real, runSandbox, cleanup } },
    { reconcilerSchedule: false, pools: false },
  );
  const health = config.healthAddress ? await serveHealth(config.healthAddress, () => worker.getState()) : undefined;
  try {
    await worker.run();
  } finally {
    health?.close();
    await worker.temporalClient.connection.close();
    await connection.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});

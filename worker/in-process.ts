/**
 * The real worker running inside this process, with a client bound to its task queue: what the demo, the
 * integration tests and the benchmark use (production runs worker/main.ts instead).
 */
import type { Client } from '@temporalio/client';
import { connectClient } from '../client/connection';
import { bundleWorkflowCode, DefaultLogger, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { connectTemporal } from './connect';
import { SandboxClient } from '../client';
import { loadConfig, type WorkerConfig } from './config';
import { drainWarmPools } from './warm-pools';
import { tracingWorkflowModules, tracingWorkerOptions, type Tracing } from './tracing';
import { createSandboxWorker } from './worker';
import { tracingInterceptors } from '../client/trace';

const bundles = new Map<'plain' | 'traced', Promise<WorkflowBundleWithSourceMap>>();
/** The workflow bundle (with the tracing interceptors, or without), built once per process: webpack takes seconds. */
export function workflowBundle(kind: 'plain' | 'traced' = 'plain'): Promise<WorkflowBundleWithSourceMap> {
  let bundle = bundles.get(kind);
  if (!bundle) {
    bundle = bundleWorkflowCode({
      workflowsPath: require.resolve('../workflows'),
      logger: new DefaultLogger('WARN'),
      ...(kind === 'traced' ? { workflowInterceptorModules: tracingWorkflowModules() } : {}),
    });
    bundles.set(kind, bundle);
  }
  return bundle;
}

export interface InProcessWorker {
  config: WorkerConfig;
  worker: Awaited<ReturnType<typeof createSandboxWorker>>;
  client: SandboxClient;
  temporal: Client;
  /** Stops the worker (once; later calls wait for the first); the client stays usable. */
  stopWorker(): Promise<void>;
  /** Stops the worker and closes the client. */
  stop(): Promise<void>;
}

/**
 * Starts the worker configured by `env` (see worker/config.ts). With `ephemeral`, the task queue is a throwaway
 * one: its reconciler Schedule (if `env` turns one on) is deleted again when the worker stops.
 */
export async function startInProcessWorker(
  env: Record<string, string | undefined>,
  options: {
    ephemeral?: boolean;
    tracing?: Tracing;
    /** What it sets up for the task queue besides serving it (see createSandboxWorker). */
    duties?: { reconcilerSchedule?: boolean; pools?: boolean };
    /** The task queue is this worker's alone (a test's): at stop, every execution still open on it is ended first. */
    settleOnStop?: boolean;
  } = {},
): Promise<InProcessWorker> {
  const config = loadConfig(env);
  const nativeConnection = await connectTemporal(config.temporal);
  const worker = await createSandboxWorker(
    config,
    nativeConnection,
    {
      workflowBundle: await workflowBundle(options.tracing ? 'traced' : 'plain'),
      workflowsPath: undefined,
      ...(options.tracing ? tracingWorkerOptions(options.tracing, { prebundled: true }) : {}),
    },
    options.duties,
  );
  const running = worker.run();
  const temporal = await connectClient(config.temporal, undefined, options.tracing ? tracingInterceptors() : undefined);
  const connection = temporal.connection;
  const client = await SandboxClient.connect({
    client: temporal,
    taskQueue: config.temporal.taskQueue,
    policy: config.policy,
  });
  let stopped: Promise<void> | undefined;
  const stopWorker = (): Promise<void> => {
    stopped ??= (async () => {
      // A task queue of its own: what still runs on it is ended before the worker goes.
      if (options.settleOnStop && worker.getState() === 'RUNNING')
        await settleOpenExecutions(client, config.temporal.taskQueue);
      // A throwaway worker empties its pools while it can still run their last round.
      if (
        options.ephemeral &&
        options.duties?.pools !== false &&
        Object.values(config.pool.sizes).some((n) => n > 0) &&
        worker.getState() === 'RUNNING'
      ) {
        await drainWarmPools(worker.temporalClient, config).catch(() => undefined);
      }
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running.catch(() => undefined);
      if (options.ephemeral && options.duties?.reconcilerSchedule !== false && config.reconcile.intervalSeconds > 0) {
        await worker.temporalClient.schedule
          .getHandle(config.reconcile.scheduleId)
          .delete()
          .catch(() => undefined);
      }
      await worker.temporalClient.connection.close().catch(() => undefined);
      await nativeConnection.close().catch(() => undefined);
    })();
    return stopped;
  };
  return {
    config,
    worker,
    client,
    temporal,
    stopWorker,
    async stop() {
      await stopWorker();
      await connection.close().catch(() => undefined);
    },
  };
}

/** How long a stopping throwaway worker waits for the executions still open on its task queue to end. */
const SETTLE_MS = 60_000;

/**
 * Ends every execution still open on the task queue while this worker can still serve them: those with a result are
 * cleaning up and are awaited, the others are cancelled (their sandboxes stopped and removed) and awaited. One that
 * has not ended within the wait is terminated: the reconciler of the next worker removes what it left.
 */
export async function settleOpenExecutions(client: SandboxClient, taskQueue: string): Promise<void> {
  const query = `TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running' AND WorkflowType = 'executeCode'`;
  const open: string[] = [];
  try {
    for await (const w of client.temporal.workflow.list({ query })) open.push(w.workflowId);
  } catch {
    return; // no visibility: nothing to go by
  }
  const deadline = Date.now() + SETTLE_MS;
  await Promise.all(
    open.map(async (id) => {
      const state = await client.getExecution(id).catch(() => undefined);
      const handle = client.handle(id);
      if (state && (state.state === 'queued' || state.state === 'running'))
        await handle.cancel().catch(() => undefined);
      if (!(await client.closesWithin(id, deadline - Date.now())))
        await handle.terminate('its throwaway worker stopped').catch(() => undefined);
    }),
  );
}

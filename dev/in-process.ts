/**
 * The real worker running inside this process, with a client bound to its task queue: what the demo, the
 * integration tests and the benchmark use (production runs worker/main.ts instead).
 */
import type { Client } from '@temporalio/client';
import { connectClient } from '../client/connection';
import { bundleWorkflowCode, DefaultLogger, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { connectTemporal } from '../worker/connect';
import { SandboxClient } from '../client';
import { loadConfig, type WorkerConfig } from '../worker/config';
import { drainWarmPools } from '../worker/warm-pools';
import { tracingWorkflowModules, tracingWorkerOptions, type Tracing } from '../worker/tracing';
import { createSandboxWorker } from '../worker/worker';
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
  options: { ephemeral?: boolean; tracing?: Tracing } = {},
): Promise<InProcessWorker> {
  const config = loadConfig(env);
  const nativeConnection = await connectTemporal(config.temporal);
  const worker = await createSandboxWorker(config, nativeConnection, {
    workflowBundle: await workflowBundle(options.tracing ? 'traced' : 'plain'),
    workflowsPath: undefined,
    ...(options.tracing ? tracingWorkerOptions(options.tracing, { prebundled: true }) : {}),
  });
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
      // A throwaway worker empties its pools while it can still run their last round.
      if (options.ephemeral && config.pool.size > 0 && worker.getState() === 'RUNNING') {
        await drainWarmPools(worker.temporalClient, config).catch(() => undefined);
      }
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running.catch(() => undefined);
      if (options.ephemeral && config.reconcile.intervalSeconds > 0) {
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

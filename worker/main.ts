/**
 * The worker process. Configuration comes from the environment (see README, "Configuration"); dev/worker.ts runs
 * it against the local stack. SIGINT/SIGTERM drain running activities and stop it. A worker that lacks something it
 * needs (a bad setting, Temporal or Kubernetes unreachable, a missing namespace or permission: worker/preflight.ts)
 * exits at start with one line on stderr saying what.
 */
import { DefaultLogger, Runtime, type LogEntry, type State } from '@temporalio/worker';
import { TemporalConnectionError } from '../client/connection';
import { ConfigError, loadConfig } from './config';
import { connectTemporal } from './connect';
import { serveHealth } from './health';
import { loadKube, PreflightError, watchApiServer } from './preflight';
import { telemetryOptions } from './telemetry';
import { tracingFromEnv, tracingWorkerOptions } from './tracing';
import { createSandboxWorker } from './worker';

function jsonLine(entry: LogEntry): void {
  const { level, message, meta, timestampNanos } = entry;
  process.stdout.write(
    `${JSON.stringify({ time: new Date(Number(timestampNanos / 1_000_000n)).toISOString(), level, message, ...meta })}\n`,
  );
}

async function run(): Promise<void> {
  const config = loadConfig();
  const kube = loadKube(config);
  const telemetry = telemetryOptions(config.metricsAddress);
  Runtime.install({
    logger: new DefaultLogger(config.logLevel, jsonLine),
    shutdownSignals: ['SIGINT', 'SIGTERM'],
    ...(telemetry ? { telemetryOptions: telemetry } : {}),
  });
  const tracing = tracingFromEnv('durable-sandbox-worker');
  const connection = await connectTemporal(config.temporal);
  // Activities get DS_SHUTDOWN_GRACE_SECONDS to finish on SIGTERM; the rest are retried by another worker.
  let state: () => State = () => 'INITIALIZED';
  const apiServer = watchApiServer(kube.config);
  const health = config.healthAddress
    ? await serveHealth(config.healthAddress, () => state(), apiServer.problem)
    : undefined;
  // Checks the cluster (worker/preflight.ts) before it creates anything.
  const worker = await createSandboxWorker(config, connection, {
    shutdownGraceTime: `${config.shutdownGraceSeconds}s`,
    ...(tracing ? tracingWorkerOptions(tracing) : {}),
  });
  state = () => worker.getState();
  Runtime.instance().logger.info('worker started', {
    temporal: config.temporal.address,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    sandboxNamespace: config.policy.namespace,
    images: config.policy.images,
    ...(config.metricsAddress ? { metrics: `http://${config.metricsAddress}/metrics` } : {}),
    traces: tracing ? 'on' : 'off',
    ...(config.healthAddress ? { health: `http://${config.healthAddress}/readyz` } : {}),
  });
  try {
    await worker.run();
  } finally {
    await worker.temporalClient.connection.close();
    await connection.close();
    await tracing?.shutdown();
    apiServer.stop();
    health?.close();
  }
}

run().catch((err) => {
  // What the operator has to fix gets one line; anything else its stack.
  if (err instanceof PreflightError || err instanceof ConfigError || err instanceof TemporalConnectionError) {
    process.stderr.write(`worker: cannot start: ${err.message}\n`);
  } else {
    process.stderr.write(`worker failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exit(1);
});

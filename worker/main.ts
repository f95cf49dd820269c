/**
 * The worker process. Configuration comes from the environment (see README, "Configuration"); dev/worker.ts runs
 * it against the local stack. SIGINT/SIGTERM drain running activities and stop it.
 */
import { DefaultLogger, Runtime, type LogEntry, type State } from '@temporalio/worker';
import { loadConfig } from './config';
import { connectTemporal } from './connect';
import { serveHealth } from './health';
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
  const health = config.healthAddress ? await serveHealth(config.healthAddress, () => state()) : undefined;
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
    health?.close();
  }
}

run().catch((err) => {
  process.stderr.write(`worker failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

/**
 * The Runtime's telemetry: with a metrics address, Prometheus metrics on it (`/metrics`): the SDK's own
 * (`temporal_*`: task slots, poll and schedule-to-start latencies, failures) and the project's (`durable_sandbox_*`,
 * recorded through the SDK's metric meter: see core/metrics.ts).
 */
import type { TelemetryOptions } from '@temporalio/worker';

export function telemetryOptions(metricsAddress: string | undefined): TelemetryOptions | undefined {
  if (!metricsAddress) return undefined;
  return {
    metrics: {
      prometheus: { bindAddress: metricsAddress, countersTotalSuffix: true, useSecondsForDurations: true },
    },
  };
}

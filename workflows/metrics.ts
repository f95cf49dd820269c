/**
 * What the workflows count, through the SDK's metric meter (exported by the worker's Runtime, e.g. to Prometheus when
 * DS_METRICS_ADDRESS is set). The SDK drops workflow metrics while replaying, so each execution counts once.
 */
import { metricMeter } from '@temporalio/workflow';
import { METRICS, phaseDurations, reconcileReason } from '../core/metrics';
import type { ExecutionResult, PhaseEvent } from '../core/types';

// Made on use: workflow code runs in the workflow's own context, and the meter is the one of the run at hand.
const executions = () => metricMeter.createCounter(METRICS.executions, 'executions', 'executions finished, by status');
const attempts = () => metricMeter.createCounter(METRICS.attempts, 'attempts', 'sandbox attempts made');
const infraErrors = () => metricMeter.createCounter(METRICS.infraErrors, 'errors', 'infrastructure failures');
const phases = () => metricMeter.createHistogram(METRICS.phaseSeconds, 'float', 's', 'time spent in each phase');
const reconciled = () => metricMeter.createCounter(METRICS.reconcilerDeletions, 'objects', 'objects reconciled away');

/** An execution's end: its status, attempts, infrastructure errors and phase durations (cleanup included). */
export function recordExecution(result: ExecutionResult, timeline: readonly PhaseEvent[]): void {
  const tags = { status: result.status, language: result.language, sandbox: result.sandbox };
  executions().add(1, tags);
  attempts().add(result.attempts, { language: result.language, sandbox: result.sandbox });
  for (const e of result.attemptErrors) infraErrors().add(1, { reason: e.reason, retryable: String(e.retryable) });
  for (const { phase, seconds } of phaseDurations(timeline))
    phases().record(seconds, { phase, sandbox: result.sandbox });
}

export function recordReconciled(deleted: readonly { kind: string; why: string }[]): void {
  for (const d of deleted) reconciled().add(1, { kind: d.kind, reason: reconcileReason(d.why) });
}

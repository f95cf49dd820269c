/**
 * Makes sure the reconciler's Temporal Schedule exists and matches this worker's configuration (every worker
 * does this at start; the Schedule itself is shared). Overlapping runs are skipped.
 */
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import type { WorkerConfig } from './config';

export async function ensureReconcilerSchedule(
  client: Client,
  config: WorkerConfig,
): Promise<'created' | 'updated' | 'off'> {
  const { reconcile, temporal } = config;
  if (reconcile.intervalSeconds === 0) return 'off';
  const options: ScheduleOptions = {
    scheduleId: reconcile.scheduleId,
    spec: { intervals: [{ every: `${reconcile.intervalSeconds}s` }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'reconcileSandboxes',
      taskQueue: temporal.taskQueue,
      args: [{ maxAgeSeconds: reconcile.maxAgeSeconds, minAgeSeconds: reconcile.minAgeSeconds }],
      workflowExecutionTimeout: `${Math.max(60, reconcile.intervalSeconds)}s`,
      staticSummary: 'delete sandbox objects no running execution owns',
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1m' },
  };
  try {
    await client.schedule.create(options);
    return 'created';
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
    await client.schedule
      .getHandle(reconcile.scheduleId)
      .update((prev) => ({ ...prev, spec: options.spec, action: options.action, policies: options.policies }));
    return 'updated';
  }
}

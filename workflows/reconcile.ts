/**
 * reconcileSandboxes: run by a Temporal Schedule every few minutes. Deletes the Kubernetes objects of executions
 * (and the unclaimed pods of warm pools) whose workflow is no longer running or unknown to Temporal, and anything
 * older than a hard ceiling; never touches what a running execution or pool owns while it is younger than that.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { SandboxActivities } from '../activities';
import { recordReconciled } from './metrics';
import type { SandboxObject } from '../activities/reconcile-steps';

const { listSandboxObjects, executionStates, deleteSandboxObjects } = proxyActivities<SandboxActivities>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 5 },
});

export interface ReconcileOptions {
  /** Objects older than this are deleted whatever their execution's state. */
  maxAgeSeconds: number;
  /** Objects younger than this are left alone (their execution may be a moment from cleaning up itself). */
  minAgeSeconds: number;
}

export interface ReconcileReport {
  examined: number;
  deleted: { kind: SandboxObject['kind']; name: string; owner?: string; why: string }[];
  keptRunning: number;
}

export async function reconcileSandboxes(options: ReconcileOptions): Promise<ReconcileReport> {
  const objects = await listSandboxObjects();
  const ids = [...new Set(objects.flatMap((o) => (o.owner ? [o.owner] : [])))];
  const states = ids.length ? await executionStates(ids) : {};
  const now = Date.now();
  const report: ReconcileReport = { examined: objects.length, deleted: [], keptRunning: 0 };
  const doomed: SandboxObject[] = [];
  for (const o of objects) {
    const age = (now - o.createdAt) / 1000;
    const state = o.owner ? states[o.owner] : 'missing';
    const ceiling = o.maxAgeSeconds ?? options.maxAgeSeconds;
    const why =
      age > ceiling
        ? `older than ${ceiling} s`
        : age < options.minAgeSeconds
          ? undefined
          : state === 'closed'
            ? 'owner closed'
            : state === 'missing'
              ? 'owner unknown to Temporal'
              : undefined;
    if (why) {
      doomed.push(o);
      report.deleted.push({ kind: o.kind, name: o.name, owner: o.owner, why });
    } else if (state === 'running') {
      report.keptRunning++;
    }
  }
  if (doomed.length) await deleteSandboxObjects(doomed);
  recordReconciled(report.deleted);
  return report;
}

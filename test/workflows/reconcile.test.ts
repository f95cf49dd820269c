/**
 * The reconciler workflow's decisions on a Temporal dev server with its steps mocked: what it deletes, what it keeps
 * and why, for each age and owner state. The reconciler against the real cluster is
 * test/integration/reconciler.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import type { SandboxActivities } from '../../activities';
import type { SandboxObject } from '../../activities/reconcile-steps';
import { workflowBundle } from '../../worker/in-process';
import type { reconcileSandboxes } from '../../workflows';
import { useWorkflowEnvironment } from './temporal-cli';

const testing = useWorkflowEnvironment();

type State = 'running' | 'closed' | 'missing';

async function reconcile(objects: SandboxObject[], states: Record<string, State>) {
  const deleted: SandboxObject[][] = [];
  const asked: string[][] = [];
  const activities: Partial<SandboxActivities> = {
    listSandboxObjects: async () => objects,
    executionStates: async (ids: string[]) => {
      asked.push(ids);
      return Object.fromEntries(ids.map((id) => [id, states[id] ?? 'missing']));
    },
    deleteSandboxObjects: async (doomed: SandboxObject[]) => {
      deleted.push(doomed);
      return doomed.length;
    },
  };
  const taskQueue = `reconcile-${randomUUID()}`;
  const worker = await Worker.create({
    connection: testing.env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities,
  });
  const report = await worker.runUntil(
    testing.env.client.workflow.execute<typeof reconcileSandboxes>('reconcileSandboxes', {
      taskQueue,
      workflowId: taskQueue,
      args: [{ minAgeSeconds: 60, maxAgeSeconds: 3600 }],
    }),
  );
  return { report, deleted, asked };
}

const ago = (seconds: number) => Date.now() - seconds * 1000;

test('deletes what a closed or unknown owner left and anything past the ceiling; keeps the young and the running', async () => {
  const objects: SandboxObject[] = [
    { kind: 'Job', name: 'job-closed', owner: 'exec-closed', createdAt: ago(120) },
    { kind: 'ConfigMap', name: 'cm-closed', owner: 'exec-closed', createdAt: ago(120) },
    { kind: 'Job', name: 'job-unknown', owner: 'exec-unknown', createdAt: ago(120) },
    { kind: 'Pod', name: 'pod-no-owner', createdAt: ago(120) },
    { kind: 'Job', name: 'job-running', owner: 'exec-running', createdAt: ago(120) },
    { kind: 'Pod', name: 'pool-pod-of-running-pool', owner: 'pool-running', createdAt: ago(600) },
    { kind: 'Job', name: 'job-ancient', owner: 'exec-running', createdAt: ago(7200) },
    { kind: 'Job', name: 'job-young-closed', owner: 'exec-young', createdAt: ago(10) },
  ];
  const { report, deleted, asked } = await reconcile(objects, {
    'exec-closed': 'closed',
    'exec-running': 'running',
    'pool-running': 'running',
    'exec-young': 'closed',
  });
  // Each owner is asked about once, in one call.
  expect(asked).toHaveLength(1);
  expect([...asked[0]].sort()).toEqual(['exec-closed', 'exec-running', 'exec-unknown', 'exec-young', 'pool-running']);
  expect(report.examined).toBe(8);
  expect(report.keptRunning).toBe(2);
  const why = Object.fromEntries(report.deleted.map((d) => [d.name, d.why]));
  expect(why).toEqual({
    'job-closed': 'owner closed',
    'cm-closed': 'owner closed',
    'job-unknown': 'owner unknown to Temporal',
    'pod-no-owner': 'owner unknown to Temporal',
    'job-ancient': 'older than 3600 s',
  });
  expect(deleted).toHaveLength(1);
  expect(deleted[0].map((o) => o.name).sort()).toEqual(Object.keys(why).sort());
});

test('nothing to delete: no delete step, no question without owners', async () => {
  const none = await reconcile([], {});
  expect(none.report).toEqual({ examined: 0, deleted: [], keptRunning: 0 });
  expect(none.asked).toEqual([]);
  expect(none.deleted).toEqual([]);
  const kept = await reconcile([{ kind: 'Job', name: 'j', owner: 'e', createdAt: ago(120) }], { e: 'running' });
  expect(kept.report).toMatchObject({ examined: 1, deleted: [], keptRunning: 1 });
  expect(kept.deleted).toEqual([]);
});

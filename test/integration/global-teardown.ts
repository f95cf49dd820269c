/**
 * After the integration tests: no workflow they started may still be open. Each test's worker ends what runs on its
 * task queue before it stops (dev/in-process.ts), so an execution, pool or reconciler run still open here is a test
 * that left it behind: it is named, ended (cancelled, then terminated if it does not end), and the run fails.
 */
import { Client, Connection } from '@temporalio/client';
import { applyStackEnv } from '../../cli/local-stack';
import { DEFAULT_TASK_QUEUE } from '../../core/policy';
import { RUN_STARTED_ENV } from './global-setup';

/** Time for what is winding down on its own (a reconciler round, a pool's last round) to end. */
const GRACE_MS = 30_000;

export default async function globalTeardown(): Promise<void> {
  const started = process.env[RUN_STARTED_ENV];
  if (!started) return;
  applyStackEnv();
  const connection = await Connection.connect({ address: process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233' });
  const client = new Client({ connection, namespace: process.env.TEMPORAL_NAMESPACE ?? 'default' });
  try {
    const open = async () => {
      const found: { id: string; type: string; taskQueue: string }[] = [];
      const query = `ExecutionStatus = 'Running' AND StartTime >= '${started}'`;
      for await (const w of client.workflow.list({ query }))
        if (w.taskQueue !== DEFAULT_TASK_QUEUE) found.push({ id: w.workflowId, type: w.type, taskQueue: w.taskQueue });
      return found;
    };
    const until = Date.now() + GRACE_MS;
    let left = await open();
    while (left.length > 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 2000));
      left = await open();
    }
    if (left.length === 0) return;
    for (const w of left) {
      const handle = client.workflow.getHandle(w.id);
      await handle.cancel().catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 10_000));
    for (const w of await open())
      await client.workflow
        .getHandle(w.id)
        .terminate('left open by the integration tests')
        .catch(() => undefined);
    throw new Error(
      `the integration tests left ${left.length} workflow(s) open: ` +
        left.map((w) => `${w.type} ${w.id} on ${w.taskQueue}`).join('; '),
    );
  } finally {
    await connection.close();
  }
}

/**
 * The warmPool workflow's own logic on a Temporal dev server with its one step mocked: when it runs a round, what
 * it passes, how signals and the period wake it, and that size 0 empties the pool and ends it. The pool against the
 * real cluster is test/integration/warm-pool.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import type { SandboxActivities } from '../../activities';
import type { PoolInput, PoolReport } from '../../activities/maintain-pool';
import { DEFAULT_POLICY } from '../../core/policy';
import { POOL_SIGNALS, poolWorkflowId } from '../../core/pool';
import { workflowBundle } from '../../worker/in-process';
import type { warmPool } from '../../workflows';
import { poolQuery } from '../../workflows/warm-pool';
import { useWorkflowEnvironment } from './temporal-cli';

const testing = useWorkflowEnvironment();

function input(taskQueue: string, size: number, maxIdleSeconds = 600): PoolInput {
  return {
    taskQueue,
    language: 'python',
    policy: DEFAULT_POLICY,
    config: { size, maxIdleSeconds },
    owner: poolWorkflowId(taskQueue, 'python'),
  };
}

/** A mocked pool: each round records its input and reports `size` ready pods (none once the size is 0). */
class MockPool {
  readonly rounds: { size: number; at: number }[] = [];

  activities(): Partial<SandboxActivities> {
    return {
      maintainPool: async (i: PoolInput): Promise<PoolReport> => {
        this.rounds.push({ size: i.config.size, at: Date.now() });
        return { ready: i.config.size, starting: 0, claimed: 0, created: 0, deleted: [], at: Date.now() };
      },
    };
  }

  async until(n: number, timeoutMs = 20_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.rounds.length < n) {
      if (Date.now() > end) throw new Error(`${this.rounds.length} rounds, not ${n}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function withPool<T>(pool: MockPool, fn: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = `pool-${randomUUID()}`;
  const worker = await Worker.create({
    connection: testing.env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: pool.activities(),
  });
  return worker.runUntil(fn(taskQueue));
}

const start = (taskQueue: string, i: PoolInput) =>
  testing.env.client.workflow.start<typeof warmPool>('warmPool', { taskQueue, workflowId: i.owner, args: [i] });

test('a round at start; a claim (replenish) brings another a few seconds later, not at once', async () => {
  const pool = new MockPool();
  await withPool(pool, async (q) => {
    const handle = await start(q, input(q, 2));
    await pool.until(1);
    expect(pool.rounds[0].size).toBe(2);
    const claimedAt = Date.now();
    await handle.signal(POOL_SIGNALS.replenish);
    await pool.until(2);
    // The refill waits so that the programs that just claimed pods get the node's CPU first.
    expect(pool.rounds[1].at - claimedAt).toBeGreaterThanOrEqual(2500);
    expect(await handle.query(poolQuery)).toMatchObject({ input: { config: { size: 2 } }, last: { ready: 2 } });
    await handle.terminate();
  });
});

test('a worker with new settings (configure) takes effect at once; size 0 empties the pool and ends the workflow', async () => {
  const pool = new MockPool();
  await withPool(pool, async (q) => {
    const handle = await start(q, input(q, 3));
    await pool.until(1);
    await handle.signal(POOL_SIGNALS.configure, input(q, 1));
    await pool.until(2);
    expect(pool.rounds[1].size).toBe(1);
    await handle.signal(POOL_SIGNALS.configure, input(q, 0));
    await handle.result();
    expect(pool.rounds.map((r) => r.size)).toEqual([3, 1, 0]);
  });
});

test('with nothing happening it still runs a round every period (max idle / 4, at least 5 s): idle pods get recycled', async () => {
  const pool = new MockPool();
  await withPool(pool, async (q) => {
    const handle = await start(q, input(q, 1, 20));
    await pool.until(3, 20_000);
    const gaps = pool.rounds.slice(1).map((r, i) => r.at - pool.rounds[i].at);
    for (const gap of gaps) {
      expect(gap).toBeGreaterThanOrEqual(4500);
      expect(gap).toBeLessThan(9000);
    }
    await handle.terminate();
  });
});

/**
 * The replenish signals a worker sends its warm pools: one per claim would make every claim of a burst a workflow
 * task of the pool's; they are coalesced to at most one per window per pool, and a claim inside a window is still
 * followed by a signal.
 */
import type { ActivityDeps } from '../../activities/deps';
import { nudgePools, NUDGE_EVERY_MS } from '../../activities/warm-sandbox';
import { poolWorkflowId } from '../../core/pool';

function fakeDeps(sizes: Partial<Record<'python' | 'javascript', number>>) {
  const signals: { at: number; workflowId: string }[] = [];
  const temporal = {
    workflow: {
      getHandle: (workflowId: string) => ({
        signal: async () => {
          signals.push({ at: Date.now(), workflowId });
        },
      }),
    },
  };
  const deps = { pool: { sizes }, temporal } as unknown as ActivityDeps;
  return { deps, signals };
}

beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
afterEach(() => jest.useRealTimers());

test('a burst of ten claims signals the pool twice: at once, and once after the window', async () => {
  const { deps, signals } = fakeDeps({ python: 10 });
  for (let i = 0; i < 10; i++) {
    nudgePools(deps, 'q', ['python']);
    jest.advanceTimersByTime(50);
  }
  await Promise.resolve();
  expect(signals).toHaveLength(1);
  jest.advanceTimersByTime(NUDGE_EVERY_MS);
  await Promise.resolve();
  expect(signals).toHaveLength(2);
  // The last claim (at +450 ms) is covered by a signal sent after it.
  expect(signals[1].at).toBeGreaterThanOrEqual(1_000_000 + 450);
  jest.advanceTimersByTime(10 * NUDGE_EVERY_MS);
  await Promise.resolve();
  expect(signals).toHaveLength(2);
});

test('claims further apart than the window each signal at once', async () => {
  const { deps, signals } = fakeDeps({ python: 2 });
  nudgePools(deps, 'q', ['python']);
  jest.advanceTimersByTime(NUDGE_EVERY_MS + 1);
  nudgePools(deps, 'q', ['python']);
  await Promise.resolve();
  expect(signals.map((s) => s.at)).toEqual([1_000_000, 1_000_000 + NUDGE_EVERY_MS + 1]);
});

test('each pool, and each worker, is coalesced on its own; a language without a pool is not signalled', async () => {
  const a = fakeDeps({ python: 2, javascript: 2 });
  const b = fakeDeps({ python: 2 });
  nudgePools(a.deps, 'q', ['python']);
  nudgePools(a.deps, 'q'); // both languages: python's is coalesced with the one before
  nudgePools(a.deps, 'other', ['python']);
  nudgePools(b.deps, 'q'); // b has no javascript pool
  await Promise.resolve();
  expect(a.signals.map((s) => s.workflowId).sort()).toEqual(
    [poolWorkflowId('other', 'python'), poolWorkflowId('q', 'javascript'), poolWorkflowId('q', 'python')].sort(),
  );
  expect(b.signals.map((s) => s.workflowId)).toEqual([poolWorkflowId('q', 'python')]);
});

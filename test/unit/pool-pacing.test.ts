/** Refill pacing (core/pool.ts): a pool does not start sandboxes while the programs that just claimed its pods run. */
import type { V1Pod } from '@kubernetes/client-node';
import { ANNOTATIONS, LABELS, MANAGED_BY } from '../../core/names';
import { claimPatch, claimsInFlight, refillCount, REFILL_PACING, type PoolRef } from '../../core/pool';
import { DEFAULT_POLICY } from '../../core/policy';
import { validateInput } from '../../core/validate';

const pool: PoolRef = { id: 'python-abc', language: 'python', template: 't1' };
const now = 1_000_000_000;

function pod(
  state: string,
  extra: { claimedAt?: number; phase?: string; deleting?: boolean; pool?: string } = {},
): V1Pod {
  return {
    metadata: {
      name: `p-${Math.random()}`,
      labels: { [LABELS.managedBy]: MANAGED_BY, [LABELS.pool]: extra.pool ?? pool.id, [LABELS.poolState]: state },
      annotations: extra.claimedAt !== undefined ? { [ANNOTATIONS.claimedAt]: String(extra.claimedAt) } : {},
      ...(extra.deleting ? { deletionTimestamp: new Date(now) } : {}),
    },
    status: { phase: extra.phase ?? 'Running' },
  };
}

test('a claim records when it was made', () => {
  const request = validateInput({ code: 'print(1)' }, DEFAULT_POLICY);
  const patch = claimPatch(pod('ready'), { executionId: 'e', attempt: 1, request, policy: DEFAULT_POLICY, now }) as {
    metadata: { annotations: Record<string, string> };
  };
  expect(patch.metadata.annotations[ANNOTATIONS.claimedAt]).toBe(String(now));
});

test("claims in flight: this pool's recently claimed pods whose program still runs", () => {
  const recent = now - 2_000;
  expect(
    claimsInFlight(
      [
        pod('claimed', { claimedAt: recent }),
        pod('claimed', { claimedAt: recent }),
        pod('claimed', { claimedAt: recent, phase: 'Succeeded' }), // its program is over
        pod('claimed', { claimedAt: recent, deleting: true }), // being cleaned up
        pod('claimed', { claimedAt: now - REFILL_PACING.busySeconds * 1000 - 1 }), // a long program: no wait for it
        pod('claimed'), // claimed by an older worker: no time recorded
        pod('claimed', { claimedAt: recent, pool: 'other' }),
        pod('ready'),
      ],
      pool,
      now,
    ),
  ).toBe(2);
});

test('with nothing in flight a round fills the pool at once', () => {
  expect(refillCount({ missing: 10, onTheWay: 0, inFlight: 0 })).toBe(10);
  expect(refillCount({ missing: 0, onTheWay: 2, inFlight: 0 })).toBe(0);
});

test('while claims run a round only keeps one pod on its way, and defers the rest', () => {
  expect(refillCount({ missing: 10, onTheWay: 0, inFlight: 10 })).toBe(1);
  expect(refillCount({ missing: 9, onTheWay: 1, inFlight: 4 })).toBe(0);
  expect(refillCount({ missing: 0, onTheWay: 0, inFlight: 4 })).toBe(0);
});

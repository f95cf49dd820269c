/**
 * warmPool: the durable owner of one language's warm pool. It keeps the pool at its size: at start, after every
 * claim (the run step signals `replenish`), when a worker brings new settings (`configure`) and on a period that
 * also recycles pods idle for too long. Its one step, maintainPool, counts from a fresh list each time, so no crash
 * can leave more than the pool's size of ready pods. With size 0 it empties the pool and ends.
 */
import {
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
} from '@temporalio/workflow';
import type { SandboxActivities } from '../activities';
import type { PoolInput, PoolReport } from '../activities/maintain-pool';
import { POOL_SIGNALS } from '../core/pool';

// A round takes well under a second: a worker that died in one is replaced quickly.
const { maintainPool } = proxyActivities<SandboxActivities>({
  startToCloseTimeout: '15s',
  retry: { initialInterval: '1s', maximumInterval: '30s' },
});

export const replenishSignal = defineSignal(POOL_SIGNALS.replenish);
export const configureSignal = defineSignal<[PoolInput]>(POOL_SIGNALS.configure);
export const poolQuery = defineQuery<{ input: PoolInput; last?: PoolReport }>('pool');

const REFILL_DELAY = '3s';

/** Rounds before the history starts afresh (continue-as-new). */
const ROUNDS_PER_RUN = 200;

export async function warmPool(input: PoolInput): Promise<void> {
  let current = input;
  let wake = true;
  let claimed = false;
  let last: PoolReport | undefined;
  setHandler(replenishSignal, () => {
    claimed = true;
  });
  setHandler(configureSignal, (next) => {
    current = next;
    wake = true;
  });
  setHandler(poolQuery, () => ({ input: current, ...(last ? { last } : {}) }));
  for (let round = 0; round < ROUNDS_PER_RUN; round++) {
    // Often enough to replace idle pods close to their age, rarely enough to cost nothing while nothing happens.
    const period = Math.max(5, Math.min(60, Math.floor(current.config.maxIdleSeconds / 4)));
    await condition(() => wake || claimed, `${period}s`);
    if (claimed && !wake) {
      // After a claim, refill a moment later: starting sandboxes takes the node's CPU, and the programs that just
      // claimed pods (often several at once) should have it first.
      await sleep(REFILL_DELAY);
    }
    wake = false;
    claimed = false;
    last = await maintainPool(current);
    setCurrentDetails(
      `**${current.language} pool**: ${last.ready} ready, ${last.starting} starting, ${last.claimed} claimed ` +
        `(size ${current.config.size}, recycled after ${current.config.maxIdleSeconds} s idle)\n\n` +
        `last round ${new Date(last.at).toISOString()}: created ${last.created}, deleted ${last.deleted.length}` +
        last.deleted.map((d) => `\n- ${d.pod}: ${d.why}`).join(''),
    );
    if (current.config.size === 0 && last.ready + last.starting === 0) return;
  }
  await continueAsNew<typeof warmPool>(current);
}

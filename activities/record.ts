/** Heartbeats that must have reached Temporal before a step goes on (what a retry of the step must know). */
import type { Context } from '@temporalio/activity';
import { ActivityCancelledError } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { ActivityDeps } from './deps';

/** Heartbeats and waits until Temporal has recorded it (a plain heartbeat may still be on its way when the worker dies). */
export async function recordConfirmed(
  deps: Pick<ActivityDeps, 'temporal'>,
  ctx: Context,
  details: unknown,
): Promise<void> {
  ctx.heartbeat(details);
  if (!deps.temporal) return;
  try {
    await deps.temporal.activity.heartbeat(ctx.info.taskToken, details);
  } catch (err) {
    // Cancelled meanwhile: stop as a cancelled step (cleanup then removes the sandbox).
    if (err instanceof ActivityCancelledError) throw new CancelledFailure('cancelled while getting a sandbox');
    throw err;
  }
}

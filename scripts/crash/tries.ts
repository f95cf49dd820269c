/**
 * One durable step run as Temporal runs it across worker deaths: try 1 in a worker that dies at a chosen request,
 * then try 2 in a fresh one that starts from the heartbeat the dead try last recorded, and so on until a try ends.
 * A try that fails by itself (a retryable failure) is tried again, as Temporal would.
 */
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createActivities, type SandboxActivities } from '../../activities';
import type { ActivityDeps } from '../../activities/deps';
import { type CrashAt, Incarnation } from './crashable';

export interface TryRecord {
  /** What the try did to the cluster, in order (by request). */
  points: string[];
  died?: Incarnation['diedAt'];
  failed?: string;
}

export interface StepRun<O> {
  result: O;
  tries: TryRecord[];
}

export interface StepWorld {
  kubeconfig: string | undefined;
  taskQueue: string;
  /** The activities' dependencies other than the cluster. */
  deps: Omit<ActivityDeps, 'kube'>;
}

const MAX_TRIES = 6;
/** The activities' own log stays out of the harness's report. */
export const QUIET = { logger: new DefaultLogger('ERROR') };
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `step` until one try ends; try i dies at `crashes[i]` (when set and reached). */
export async function runWithCrashes<I, O>(
  world: StepWorld,
  step: (a: SandboxActivities) => (input: I) => Promise<O>,
  input: I,
  crashes: ReadonlyArray<CrashAt | undefined>,
  /** Between a try that died and the next. */
  afterDeath?: () => Promise<void>,
): Promise<StepRun<O>> {
  const tries: TryRecord[] = [];
  let recorded: unknown;
  for (let i = 0; i < MAX_TRIES; i++) {
    const me = new Incarnation(world.kubeconfig, crashes[i]);
    const env = new MockActivityEnvironment(
      {
        attempt: i + 1,
        taskQueue: world.taskQueue,
        ...(recorded !== undefined ? { heartbeatDetails: recorded } : {}),
      },
      QUIET,
    );
    env.on('heartbeat', (d: unknown) => {
      const reached = me.reach('heartbeat');
      if (reached === 'go' || reached === 'after') recorded = d;
      if (reached === 'after') me.dieAfter();
    });
    const fn = step(createActivities({ ...world.deps, kube: me.kube }));
    const running = env.run(fn, input);
    const ended = await Promise.race([
      running.then(
        (result) => ({ result }),
        (error: unknown) => ({ error }),
      ),
      me.death.then(() => ({ died: true as const })),
    ]);
    const record: TryRecord = { points: me.points };
    tries.push(record);
    if ('died' in ended) {
      record.died = me.diedAt;
      running.catch(() => undefined);
      // What the dead process still had in hand unwinds without reaching the cluster (its requests are never sent).
      env.cancel('WORKER_SHUTDOWN');
      me.close();
      await afterDeath?.();
      continue;
    }
    me.close();
    if ('result' in ended) return { result: ended.result as O, tries };
    const err = ended.error;
    if (err instanceof ApplicationFailure && err.nonRetryable) throw err;
    record.failed = err instanceof Error ? err.message : String(err);
    await delay(500);
  }
  throw new Error(
    `the step did not end in ${MAX_TRIES} tries: ${JSON.stringify(tries.map((t) => t.failed ?? t.died))}`,
  );
}

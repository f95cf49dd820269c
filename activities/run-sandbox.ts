/**
 * The run step of an attempt: gets it a sandbox, then watches the attempt to its end (attempt-watch.ts) while
 * following the container's log, so it ends when the launcher's trailer arrives instead of when the kubelet next
 * reports. The sandbox is a pre-started pod claimed from the warm pool when one is ready and the request fits the
 * pool (warm-sandbox.ts), else a ConfigMap and hardened Job made for it (cold). Heartbeats carry where it stands and
 * the output so far (live output for clients); a retry on another worker resumes from them and never creates a
 * second Job, claims a second pod or hands a pod a second task.
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { Context, log } from '@temporalio/activity';
import { ActivityCancelledError } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { resourceNames } from '../core/names';
import type { AttemptSpec, RunHeartbeat, RunResult, SandboxKind } from '../core/attempt';
import type { PodProgress } from '../core/classify';
import { collectedOutput } from '../core/output';
import { fitsPool, POOL_SIGNALS, poolRef, poolWorkflowId } from '../core/pool';
import { LANGUAGE_NAMES } from '../core/languages';
import type { Language } from '../core/types';
import { attemptAttributes } from '../core/trace';
import { AttemptWatch } from './attempt-watch';
import { poolSize, type ActivityDeps } from './deps';
import { kubeCallOrMissing } from './kube';
import { annotateSpan } from './trace';
import { createCodeConfigMap, createSandboxJob, makeConfigMapDependent } from './sandbox-objects';
import { alreadyDelivered, claimWarmPod, deliverTask, findClaimedPod, type Delivery } from './warm-sandbox';

interface Acquired {
  sandbox: SandboxKind;
  /** A fresh try's starting point for its pod watch. */
  from?: { resourceVersion?: string; pod?: V1Pod };
  acquiredAt: number;
  /** What the watch starts from: an earlier try's progress, or {} when this try found an earlier one's sandbox. */
  resumed?: PodProgress;
  job?: V1Job;
  /** Warm: the claimed pod, and whether the task must still be handed to it. */
  pod?: string;
  deliver?: boolean;
  /** Cold: making the ConfigMap a dependent of its Job, off the critical path. */
  ownership?: Promise<void>;
}

export function runSandboxActivity(deps: ActivityDeps) {
  return async function runSandbox(spec: AttemptSpec): Promise<RunResult> {
    const ctx = Context.current();
    const earlier = ctx.info.heartbeatDetails as RunHeartbeat | undefined;
    let got: Acquired;
    if (earlier?.acquiredAt !== undefined) {
      got = await resume(deps, spec, earlier);
    } else {
      // A retry whose predecessor died before its first heartbeat carries on with what that one got: the attempt's
      // Job (found by its name) or the pool pod it claimed (found by its labels), and only then gets one itself.
      got =
        (ctx.info.attempt > 1 ? await findAcquired(deps, spec, ctx.info.taskQueue) : undefined) ??
        (await acquire(deps, spec, ctx.info.taskQueue));
      const details: RunHeartbeat = {
        attempt: spec.attempt,
        sandbox: got.sandbox,
        acquiredAt: got.acquiredAt,
        progress: got.pod ? { podName: got.pod } : {},
      };
      // A warm pod gets its task only once Temporal has recorded which pod it is: a retry then never hands the
      // attempt's program to a second pod (one never told is harmless: it ran nothing).
      if (got.deliver) await recordConfirmed(deps, ctx, details);
      else ctx.heartbeat(details);
    }
    const traced = {
      executionId: spec.executionId,
      attempt: spec.attempt,
      namespace: spec.policy.namespace,
      sandbox: got.sandbox,
      ...(got.sandbox === 'cold' ? { objects: resourceNames(spec.executionId, spec.attempt).name } : {}),
    };
    annotateSpan(attemptAttributes({ ...traced, pod: got.pod }));
    const watch = new AttemptWatch(deps.kube, spec, ctx, {
      followLog: true,
      warm: got.sandbox === 'warm',
      job: got.job,
      acquiredAt: got.acquiredAt,
      resumed: got.resumed,
      from: got.from,
      onWaitsForNode: () => nudgePools(deps, ctx.info.taskQueue),
    });
    let delivery: Delivery | undefined;
    try {
      const running = watch.run();
      running.catch(() => undefined);
      if (got.deliver) delivery = await deliverTask(deps.kube, got.pod!, spec);
      const { end, progress, output } = await running;
      await got.ownership;
      annotateSpan(attemptAttributes({ ...traced, pod: progress.podName ?? got.pod }));
      return {
        end,
        progress,
        acquiredAt: got.acquiredAt,
        sandbox: got.sandbox,
        output: collectedOutput(output!, Date.now()),
      };
    } finally {
      watch.stop();
      delivery?.close();
    }
  };
}

/** Heartbeats and waits until Temporal has recorded it (a plain heartbeat may still be on its way when the worker dies). */
async function recordConfirmed(deps: ActivityDeps, ctx: Context, details: RunHeartbeat): Promise<void> {
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

/** Asks the task queue's pools for a round now: after a claim they refill, with an execution waiting they give way. */
function nudgePools(deps: ActivityDeps, taskQueue: string, languages: readonly Language[] = LANGUAGE_NAMES) {
  for (const language of languages.filter((l) => poolSize(deps, l) > 0))
    deps.temporal?.workflow
      .getHandle(poolWorkflowId(taskQueue, language))
      .signal(POOL_SIGNALS.replenish)
      .catch((err: unknown) => {
        log.warn('could not reach the warm pool', { language, error: String(err) });
      });
}

/** The first try: a warm pod when the pool has one for this request, else a cold Job. */
async function acquire(deps: ActivityDeps, spec: AttemptSpec, taskQueue: string): Promise<Acquired> {
  const language = spec.request.language;
  if (poolSize(deps, language) > 0 && fitsPool(spec.request, spec.policy)) {
    const pool = poolRef(taskQueue, language, spec.policy, deps.launcherSource);
    const claimed = await claimWarmPod(deps.kube, pool, spec);
    if (claimed) {
      // Replenish now rather than at the pool's next period.
      nudgePools(deps, taskQueue, [language]);
      const pod = claimed.pod.metadata!.name!;
      // A pod an earlier try claimed may have its task already: never hand it a second one.
      const deliver = !claimed.adopted || !(await alreadyDelivered(deps.kube, pod, spec));
      return {
        sandbox: 'warm',
        acquiredAt: claimed.at,
        pod,
        deliver,
        resumed: claimed.adopted ? { podName: pod } : undefined,
        from: { resourceVersion: claimed.pod.metadata?.resourceVersion, pod: claimed.pod },
      };
    }
  }
  // The ConfigMap first: the pod mounts it, and must not wait on a retry of the mount.
  await createCodeConfigMap(deps, spec);
  const created = await createSandboxJob(deps, spec);
  const ownership = makeConfigMapDependent(deps.kube, spec.policy.namespace, created).catch((err: unknown) => {
    log.warn('could not make the ConfigMap a dependent of its Job; cleanup and the reconciler still remove it', {
      error: err instanceof Error ? err.message : String(err),
    });
  });
  // An adopted Job was made by an earlier try that died before its heartbeat: resume as from an empty one.
  return {
    sandbox: 'cold',
    acquiredAt: created.createdAt,
    job: created.object,
    ownership,
    resumed: created.adopted ? {} : undefined,
    from: created.adopted ? undefined : { resourceVersion: created.object.metadata?.resourceVersion },
  };
}

/** What an earlier try that died while getting a sandbox got: the attempt's Job, or the pool pod it claimed. */
async function findAcquired(deps: ActivityDeps, spec: AttemptSpec, taskQueue: string): Promise<Acquired | undefined> {
  const { name } = resourceNames(spec.executionId, spec.attempt);
  const job = await kubeCallOrMissing(`look for Job ${name}`, () =>
    deps.kube.batch.readNamespacedJob({ name, namespace: spec.policy.namespace }),
  );
  if (job) {
    const created = job.metadata?.creationTimestamp;
    return { sandbox: 'cold', acquiredAt: created ? new Date(created).getTime() : Date.now(), job, resumed: {} };
  }
  const pool = poolRef(taskQueue, spec.request.language, spec.policy, deps.launcherSource);
  const own = await findClaimedPod(deps.kube, pool, spec);
  if (!own) return undefined;
  const pod = own.metadata!.name!;
  return {
    sandbox: 'warm',
    acquiredAt: Date.now(),
    pod,
    deliver: !(await alreadyDelivered(deps.kube, pod, spec)),
    resumed: { podName: pod },
  };
}

/** A retried try whose predecessor had its sandbox: carry on with it. */
async function resume(deps: ActivityDeps, spec: AttemptSpec, hb: RunHeartbeat): Promise<Acquired> {
  const base = { acquiredAt: hb.acquiredAt!, resumed: hb.progress };
  if (hb.sandbox !== 'warm') return { ...base, sandbox: 'cold' };
  const pod = hb.progress.podName!;
  return { ...base, sandbox: 'warm', pod, deliver: !(await alreadyDelivered(deps.kube, pod, spec)) };
}

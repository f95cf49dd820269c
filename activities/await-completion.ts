/**
 * Step 3: waits for the attempt's pod to finish, fail or get stuck, watching the pod (no polling loop) and
 * heartbeating what it has seen. A retry on another worker resumes from the last heartbeat's details.
 */
import { Watch, type V1Job, type V1Pod } from '@kubernetes/client-node';
import { Context } from '@temporalio/activity';
import type { AttemptSpec, AwaitResult } from '../core/attempt';
import { classify, observe, type PodProgress, type Verdict } from '../core/classify';
import { resourceNames } from '../core/names';
import type { ActivityDeps } from './deps';
import { isNotFound, kubeFailure } from './kube';

/** Full re-read of the Job and pods, in case a watch event was missed or the watch stalled. */
const RESYNC_MS = 10_000;
/** Longest sleep between evaluations (unschedulable grace is measured in these steps). */
const TICK_MS = 2_000;

export function awaitCompletionActivity({ kube }: ActivityDeps) {
  return async function awaitCompletion(spec: AttemptSpec): Promise<AwaitResult> {
    const ctx = Context.current();
    const namespace = spec.policy.namespace;
    const { name, attemptSelector } = resourceNames(spec.executionId, spec.attempt);
    let progress: PodProgress = (ctx.info.heartbeatDetails as PodProgress | undefined) ?? {};
    let job: V1Job | undefined;
    const pods = new Map<string, V1Pod>();
    let podGone = false;
    let wake: () => void = () => undefined;
    let watch: AbortController | undefined;
    let watchDone = true;
    let resourceVersion: string | undefined;

    const noteGone = (podName: string): void => {
      const last = pods.get(podName);
      const finished = last?.status?.containerStatuses?.some((c) => c.state?.terminated);
      if (!finished) podGone = true;
      pods.delete(podName);
    };

    const resync = async (): Promise<void> => {
      try {
        job = await kube.batch.readNamespacedJob({ name, namespace });
      } catch (err) {
        if (!isNotFound(err)) throw kubeFailure(err, `read Job ${name}`);
        job = undefined;
      }
      let list;
      try {
        list = await kube.core.listNamespacedPod({ namespace, labelSelector: attemptSelector });
      } catch (err) {
        throw kubeFailure(err, `list pods of Job ${name}`);
      }
      const present = new Set(list.items.map((p) => p.metadata!.name!));
      for (const known of [...pods.keys()]) if (!present.has(known)) noteGone(known);
      // A pod seen by an earlier try of this activity (heartbeat) that no longer exists was lost, too.
      if (progress.podName && !present.has(progress.podName) && progress.containerFinishedAt === undefined) {
        podGone = true;
      }
      for (const p of list.items) pods.set(p.metadata!.name!, p);
      resourceVersion = list.metadata?.resourceVersion;
    };

    const startWatch = async (): Promise<void> => {
      watchDone = false;
      watch = await new Watch(kube.config).watch(
        `/api/v1/namespaces/${namespace}/pods`,
        { labelSelector: attemptSelector, resourceVersion, allowWatchBookmarks: true },
        (type: string, obj: V1Pod) => {
          if (type === 'ADDED' || type === 'MODIFIED') pods.set(obj.metadata!.name!, obj);
          else if (type === 'DELETED') noteGone(obj.metadata!.name!);
          if (type === 'BOOKMARK') resourceVersion = obj.metadata?.resourceVersion;
          wake();
        },
        () => {
          watchDone = true;
          wake();
        },
      );
    };

    const evaluate = async (): Promise<Verdict> => {
      const now = Date.now();
      const pod = [...pods.values()].sort(
        (a, b) => (a.metadata?.creationTimestamp?.valueOf() ?? 0) - (b.metadata?.creationTimestamp?.valueOf() ?? 0),
      )[0];
      if (pod) progress = observe(progress, pod, now);
      let verdict = classify({ job, pod, podGone, progress, now, unschedulableGraceSeconds: spec.policy.unschedulableGraceSeconds });
      if (verdict.state !== 'pending') {
        // Read the Job once more before deciding: its deadline condition may be newer than the pod event.
        await resync();
        verdict = classify({ job, pod, podGone, progress, now, unschedulableGraceSeconds: spec.policy.unschedulableGraceSeconds });
      }
      progress.waitingFor = verdict.state === 'pending' ? verdict.detail : undefined;
      return verdict;
    };

    const heartbeat = setInterval(() => ctx.heartbeat(progress), 1000);
    const onCancel = (): void => wake();
    ctx.cancellationSignal.addEventListener('abort', onCancel);
    try {
      await resync();
      let lastResync = Date.now();
      for (;;) {
        if (ctx.cancellationSignal.aborted) await ctx.cancelled;
        if (watchDone) await startWatch();
        const verdict = await evaluate();
        if (verdict.state !== 'pending') {
          ctx.heartbeat(progress);
          const end =
            verdict.state === 'finished'
              ? { kind: 'finished' as const, exitCode: verdict.exitCode, reason: verdict.reason, oomKilled: verdict.oomKilled }
              : verdict.state === 'deadline'
                ? { kind: 'deadline' as const }
                : { kind: 'infra' as const, error: verdict.error };
          return { end, progress };
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, TICK_MS);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        if (Date.now() - lastResync >= RESYNC_MS || watchDone) {
          await resync();
          lastResync = Date.now();
        }
      }
    } finally {
      clearInterval(heartbeat);
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
      watch?.abort();
    }
  };
}

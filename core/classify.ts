/**
 * Reads where an attempt stands from its Job and pod status: still going, finished (with the container's exit
 * code), killed at the Job's deadline, or failed for a reason that is the infrastructure's, not the program's.
 * Pure: the await activity feeds it what the watch saw.
 */
import type { V1ContainerStatus, V1Job, V1Pod } from '@kubernetes/client-node';
import { FAILURE_REASONS, type FailureReason } from './failures';
import { CONTAINER_NAME } from './manifests';
import type { InfraError } from './types';

/** What the watch has learnt about the attempt's pod so far (ms since the epoch). Kept in heartbeats. */
export interface PodProgress {
  podName?: string;
  nodeName?: string;
  scheduledAt?: number;
  containerStartedAt?: number;
  containerFinishedAt?: number;
  /** When the pod was first seen unschedulable (cleared once scheduled). */
  unschedulableSince?: number;
  /** What the attempt is waiting for, for heartbeats and the UI. */
  waitingFor?: string;
  /**
   * When the program started, as seen from outside the sandbox (the worker's clock): the container's start for a
   * cold sandbox, the launcher's acceptance of the task for a warm one. The time limit is enforced from here too.
   */
  programStartedAt?: number;
}

export type Verdict =
  | { state: 'pending'; detail: string }
  | { state: 'finished'; exitCode: number; reason: string; oomKilled: boolean }
  | { state: 'deadline' }
  | { state: 'infra'; error: InfraError };

const IMAGE_FAILURES = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull']);
const CONFIG_FAILURES = new Set(['CreateContainerConfigError', 'CreateContainerError', 'RunContainerError']);
const START_FAILURES = new Set(['StartError', 'ContainerCannotRun']);
/**
 * The kubelet's messages when it evicts a pod for outgrowing its own local storage limits (the emptyDir's sizeLimit,
 * the pod's or a container's ephemeral-storage limit). Such evictions carry no DisruptionTarget condition; evictions
 * for node pressure do.
 */
const STORAGE_LIMIT_EVICTION =
  /EmptyDir volume .* exceeds the limit|ephemeral local storage usage exceeds|exceeded its local ephemeral storage limit/i;

function infra(reason: FailureReason, message: string): Verdict {
  return { state: 'infra', error: infraError(reason, message) };
}

/** An InfraError whose retryability is the one core/failures.ts gives its reason. */
export function infraError(reason: FailureReason, message: string): InfraError {
  return { reason, message, retryable: FAILURE_REASONS[reason].retryable };
}

function jobCondition(job: V1Job | undefined, type: string): { reason?: string; message?: string } | undefined {
  return job?.status?.conditions?.find((c) => c.type === type && c.status === 'True');
}

/** The Job's server-side deadline fired (the controller marks FailureTarget before it kills the pod). */
export function deadlineExceeded(job: V1Job | undefined): boolean {
  return ['FailureTarget', 'Failed'].some((t) => jobCondition(job, t)?.reason === 'DeadlineExceeded');
}

function containerStatus(pod: V1Pod): V1ContainerStatus | undefined {
  return pod.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
}

/** Folds a pod update into what is known, keeping first-seen times. `now` is when the update was seen. */
export function observe(progress: PodProgress, pod: V1Pod, now: number): PodProgress {
  const next: PodProgress = { ...progress, podName: pod.metadata?.name ?? progress.podName };
  if (pod.spec?.nodeName) next.nodeName = pod.spec.nodeName;
  const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'True') {
    // Observation time: the API's own timestamps have whole-second precision only.
    next.scheduledAt ??= now;
    delete next.unschedulableSince;
  } else if (scheduled?.reason === 'Unschedulable') {
    next.unschedulableSince ??= now;
  }
  const cs = containerStatus(pod);
  if (cs?.state?.running || cs?.state?.terminated) next.containerStartedAt ??= now;
  if (cs?.state?.terminated) next.containerFinishedAt ??= now;
  return next;
}

/**
 * Classifies an attempt. `pod` is undefined while the Job has none yet; `podGone` says a pod that had been seen
 * was deleted before it finished.
 */
export function classify(input: {
  job: V1Job | undefined;
  pod: V1Pod | undefined;
  podGone?: boolean;
  progress: PodProgress;
  now: number;
  unschedulableGraceSeconds: number;
  /** 'pod' for a warm pool pod: no Job, and the deadline is the pod's own. */
  owner?: 'job' | 'pod';
}): Verdict {
  const { job, pod, progress, now } = input;
  // A pool pod's own deadline (a claim set it to the program's): the kubelet stopped it.
  if (pod?.status?.reason === 'DeadlineExceeded') return { state: 'deadline' };
  if (input.owner === 'pod') {
    if (input.podGone || !pod) return infra('PodLost', 'the sandbox pod was deleted before it finished');
    return classifyPod(pod, progress, now, input.unschedulableGraceSeconds);
  }
  if (deadlineExceeded(job)) {
    if (!pod && !progress.podName) {
      return infra(
        'NoPodCreated',
        "the Job's deadline passed before the Job controller could create its pod (a full ResourceQuota does this; the Job's events say why)",
      );
    }
    return { state: 'deadline' };
  }
  if (input.podGone) return infra('PodLost', 'the sandbox pod was deleted before it finished');
  if (!job) return infra('JobLost', 'the Job was deleted before it finished');
  if (!pod) {
    const failed = jobCondition(job, 'Failed');
    if (failed) return infra('JobFailed', `the Job failed without a pod: ${failed.reason}: ${failed.message}`);
    return {
      state: 'pending',
      detail: 'waiting for the Job controller to create the pod (a full ResourceQuota delays it)',
    };
  }

  return classifyPod(pod, progress, now, input.unschedulableGraceSeconds);
}

/** What a pod's own status says, whoever owns it. */
function classifyPod(pod: V1Pod, progress: PodProgress, now: number, unschedulableGraceSeconds: number): Verdict {
  const disruption = pod.status?.conditions?.find((c) => c.type === 'DisruptionTarget' && c.status === 'True');
  const cs = containerStatus(pod);
  const terminated = cs?.state?.terminated;
  if (disruption) {
    return infra('PodDisrupted', `the pod was disrupted: ${disruption.reason}: ${disruption.message ?? ''}`.trim());
  }
  if (pod.status?.phase === 'Failed' && pod.status.reason === 'Evicted') {
    // Checked before the container's exit: an evicted container ends with the launcher's SIGTERM exit code (143),
    // which is not the program's doing.
    const message = (pod.status.message ?? '').trim();
    if (STORAGE_LIMIT_EVICTION.test(message)) {
      // The program filled its scratch space (/tmp) or wrote past its ephemeral storage: running it again would only
      // do the same.
      return infra('StorageLimitExceeded', message);
    }
    return infra('Evicted', `Evicted: ${message}`.trim());
  }
  if (terminated) {
    if (START_FAILURES.has(terminated.reason ?? '')) {
      return infra('ContainerStartFailed', `${terminated.reason}: ${terminated.message ?? ''}`.trim());
    }
    if (pod.metadata?.deletionTimestamp && terminated.reason !== 'OOMKilled') {
      // Stopped from outside (pod deleted, node drained): not the program's doing.
      return infra('PodLost', `the sandbox pod was deleted while it ran (exit ${terminated.exitCode})`);
    }
    return {
      state: 'finished',
      exitCode: terminated.exitCode,
      reason: terminated.reason ?? '',
      oomKilled: terminated.reason === 'OOMKilled',
    };
  }
  if (pod.status?.phase === 'Failed') {
    const reason = pod.status.reason ?? 'Failed';
    return infra(reason === 'Evicted' ? 'Evicted' : 'PodFailed', `${reason}: ${pod.status.message ?? ''}`.trim());
  }
  const waiting = cs?.state?.waiting;
  if (waiting && IMAGE_FAILURES.has(waiting.reason ?? '')) {
    return infra('ImagePullFailed', `${waiting.reason}: ${waiting.message ?? ''}`.trim());
  }
  if (waiting && CONFIG_FAILURES.has(waiting.reason ?? '')) {
    return infra('ContainerConfigError', `${waiting.reason}: ${waiting.message ?? ''}`.trim());
  }
  if (progress.unschedulableSince !== undefined) {
    const waited = (now - progress.unschedulableSince) / 1000;
    const why = pod.status?.conditions?.find((c) => c.type === 'PodScheduled')?.message ?? 'no node fits';
    if (waited >= unschedulableGraceSeconds) {
      return infra('Unschedulable', `unschedulable for ${Math.round(waited)} s: ${why}`);
    }
    return { state: 'pending', detail: `unschedulable for ${Math.round(waited)} s: ${why}` };
  }
  if (cs?.state?.running) return { state: 'pending', detail: 'running' };
  if (!pod.spec?.nodeName) return { state: 'pending', detail: 'waiting to be scheduled' };
  return { state: 'pending', detail: waiting?.reason ? `starting (${waiting.reason})` : 'starting' };
}

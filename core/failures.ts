/**
 * Every reason an execution's infrastructure can fail for: the one home of `InfraError.reason` and of the
 * ApplicationFailure types the activities throw. Classification, the activities, the reconciler and the result all
 * take their reasons from here; the README's table of reasons is checked against it.
 */

export const FAILURE_REASONS = {
  // What the cluster did to the sandbox (core/classify.ts).
  ImagePullFailed: { retryable: false, meaning: 'the sandbox image could not be pulled' },
  ContainerConfigError: { retryable: false, meaning: 'the kubelet could not create the container from its spec' },
  ContainerStartFailed: { retryable: false, meaning: 'the container runtime could not start the container' },
  Unschedulable: { retryable: false, meaning: 'no node could take the pod within the unschedulable grace' },
  NoPodCreated: { retryable: false, meaning: "the Job's deadline passed before its pod was created (a full quota)" },
  StorageLimitExceeded: { retryable: false, meaning: 'the program outgrew its scratch space or ephemeral storage' },
  PodLost: { retryable: true, meaning: 'the sandbox pod was deleted before it finished' },
  PodDisrupted: { retryable: true, meaning: 'the pod was disrupted (preemption, node drain, taint)' },
  Evicted: { retryable: true, meaning: 'the kubelet evicted the pod (node pressure)' },
  PodFailed: { retryable: true, meaning: 'the pod failed without its container finishing' },
  JobLost: { retryable: true, meaning: 'the Job was deleted before it finished' },
  JobFailed: { retryable: true, meaning: 'the Job failed without a pod' },
  DeliveryFailed: { retryable: true, meaning: 'the program could not be handed to a warm sandbox, which ran nothing' },
  SandboxLost: {
    retryable: false,
    meaning:
      "a session's pod was lost while a run was in it; the run is not re-run, the session's next run gets a new pod",
  },
  // What the Kubernetes API answered (activities/kube.ts).
  KubernetesRejected: { retryable: false, meaning: 'the API refused a request in a way a retry cannot change' },
  KubernetesForbidden: { retryable: false, meaning: 'the API kept answering 401/403 (credentials or RBAC)' },
  KubernetesUnavailable: { retryable: false, meaning: "the API could not be reached within the step's retry window" },
  QuotaExceeded: { retryable: false, meaning: 'a ResourceQuota stayed full for the whole retry window' },
  NameConflict: { retryable: false, meaning: "an object with the attempt's name belongs to something else" },
  // The workflow's own view.
  QueueTimeout: {
    retryable: false,
    meaning:
      'no worker started the execution within DS_QUEUE_TIMEOUT_SECONDS, or before the server ended it at its bound; nothing ran (the message says if a worker took it up as it ended)',
  },
  NoWorker: {
    retryable: false,
    meaning:
      "no worker polled the task queue while a caller waited (the client's noWorkerSeconds); nothing ran (the message says if a worker took it up as it ended)",
  },
  StepFailed: { retryable: false, meaning: 'a step failed in an unexpected way (its message says how)' },
} as const;

export type FailureReason = keyof typeof FAILURE_REASONS;

/** ApplicationFailure types thrown by steps that are not execution outcomes. */
export const STEP_FAILURES = {
  /** Cleanup found pods still present after its wait: retried until they are gone. */
  cleanupIncomplete: 'CleanupIncomplete',
  /** A worker is missing something it needs (e.g. the reconciler's Temporal client). */
  misconfigured: 'Misconfigured',
  /** Bad input, refused by the workflow (the client refuses it first). */
  invalidInput: 'InvalidInput',
  /** A run sent to a session that is closing or closed. */
  sessionClosed: 'SessionClosed',
  /** A run that reached its session after its caller had stopped waiting for it to be taken up (acceptBy). */
  runExpired: 'RunExpired',
  /**
   * A run (or fork) refused for a moment while its session moves to a new history (continue-as-new): nothing ran;
   * the client sends it again, and it reaches the session's new history.
   */
  sessionMoving: 'SessionMoving',
} as const;

export function isFailureReason(value: unknown): value is FailureReason {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(FAILURE_REASONS, value);
}

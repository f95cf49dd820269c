/**
 * The kinds of sandbox an attempt's program runs in, and what every step needs to know about each. The run step,
 * its watch, the workflow and cleanup read these traits instead of asking which kind they hold; how a kind is got,
 * handed its task and released lives in activities/sandboxes.ts. Adding a kind is one entry here and one there.
 */
/**
 * A Job made for the attempt (cold), a pre-started pod claimed from the warm pool (warm), or a session's pod, which
 * runs many runs in one interpreter (session; workflows/session.ts).
 */
export const SANDBOX_KIND_NAMES = ['cold', 'warm', 'session'] as const;
export type SandboxKind = (typeof SANDBOX_KIND_NAMES)[number];

export interface SandboxTraits {
  /**
   * What owns the pod and carries the server-side deadline: a Job (whose status the watch reads before deciding, and
   * whose deadline condition wins over the pod's status), or the pod itself (its own activeDeadlineSeconds).
   */
  owner: 'job' | 'pod';
  /**
   * How the task reaches the launcher: with the pod, mounted from the attempt's ConfigMap (the program starts with
   * the container), or handed to a launcher that is already waiting (the program starts when the launcher accepts
   * the task, which it must do for this attempt and no other).
   */
  task: 'mounted' | 'handed';
  /** Which of the attempt's named objects exist besides its pod (they are reported in the result's refs). */
  objects: ReadonlyArray<'job' | 'configMap'>;
  /** The phase of the timeline at which the attempt got its sandbox. */
  acquiredPhase: 'jobCreated' | 'claimed';
  /** Whether the pod is scheduled for the attempt (so the attempt's timeline has a podScheduled phase). */
  scheduledForAttempt: boolean;
}

export const SANDBOXES: Readonly<Record<SandboxKind, SandboxTraits>> = {
  cold: {
    owner: 'job',
    task: 'mounted',
    objects: ['job', 'configMap'],
    acquiredPhase: 'jobCreated',
    scheduledForAttempt: true,
  },
  warm: {
    owner: 'pod',
    task: 'handed',
    objects: [],
    acquiredPhase: 'claimed',
    scheduledForAttempt: false,
  },
  session: {
    owner: 'pod',
    task: 'handed',
    objects: [],
    acquiredPhase: 'claimed',
    scheduledForAttempt: false,
  },
};

/** The traits of a kind; a heartbeat or result recorded before kinds existed ran cold. */
export function sandboxTraits(kind: SandboxKind | undefined): SandboxTraits {
  return SANDBOXES[kind ?? 'cold'];
}

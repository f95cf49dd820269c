/**
 * The decisions of an attempt's watch, as a pure function: what the watch has seen (the pod, its owner, the
 * launcher's words in the log) goes in, the next step comes out (end the attempt, read something again, or wait).
 * activities/attempt-watch.ts does the I/O around it; test/unit/watch.test.ts feeds it captured sequences.
 *
 * It ends as soon as the launcher's trailer says the program exited by itself or hit its time limit. Without such a
 * trailer (OOM kill, eviction, the Job's deadline, a lost pod, a program ended by a signal) the kubelet's status
 * decides, classified by classify.ts, after the rest of the log has been read.
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { AttemptEnd } from './attempt';
import { classify, infraError, observe, type PodProgress, type Verdict } from './classify';
import type { LauncherAcceptance, LauncherTrailer } from './launcher-protocol';
import { CONTAINER_NAME } from './manifests';
import type { SandboxTraits } from './sandbox';

/** Longest sleep between evaluations (the unschedulable grace is measured in these steps). */
export const TICK_MS = 2_000;
/** Once the kubelet says the container is done, how long the rest of its log may take to arrive. */
export const LOG_DRAIN_MS = 3_000;
/** Beyond the sandbox's own deadline, how long the step waits before calling the attempt timed out itself. */
export const DEADLINE_GRACE_MS = 30_000;
/**
 * Beyond the program's time limit, counted from its start as seen from outside, how long the launcher has to report
 * it timed out; then the step stops the sandbox itself (a launcher the program stopped, killed or hung).
 */
export const OUTSIDE_GRACE_MS = 3_000;

export type AttemptEndNotCancelled = Exclude<AttemptEnd, { kind: 'cancelled' }>;

/** Where the followed log stands: not opened yet, streaming, read to its end, or broken (to be read again). */
export type LogState = 'none' | 'open' | 'ended' | 'broken';

/** What does not change during one watch. */
export interface WatchSetup {
  executionId: string;
  attempt: number;
  timeoutSeconds: number;
  unschedulableGraceSeconds: number;
  sandbox: SandboxTraits;
  /** Whether the watch follows the container's log (the launcher's words); without it only the kubelet decides. */
  followLog: boolean;
  /** When the step calls the attempt past its deadline itself (the sandbox's deadline plus grace); none if unknown. */
  giveUpAt?: number;
}

/** What the watch has seen at one moment. */
export interface WatchFacts {
  now: number;
  pod?: V1Pod;
  /** A pod that had been seen was deleted before its container finished. */
  podGone: boolean;
  /** The owning Job, when the sandbox has one and it has been read (undefined if missing). */
  job?: V1Job;
  /** Whether the owner's status has been read at least once (from its create, a read, or found missing). */
  ownerRead: boolean;
  trailer: LauncherTrailer | null;
  accepted: LauncherAcceptance | null;
  log: LogState;
}

/** What the watch carries from one decision to the next (its progress goes out in heartbeats). */
export interface WatchMemo {
  progress: PodProgress;
  /** When the watch started waiting for the rest of the log before the kubelet's word decides. */
  drainSince?: number;
  /** The pods and the owner were read again since the attempt last looked pending. */
  fresh: boolean;
}

export type WatchStep =
  /** The attempt is over; when `stopPod` is set, the sandbox outlived the time limit and must be stopped first. */
  | { do: 'end'; end: AttemptEndNotCancelled; stopPod?: string }
  /** Read the owner (its Job) before deciding: decide again with it. */
  | { do: 'read-owner' }
  /** Re-list the pods and re-read the owner before the kubelet's word decides: decide again with them. */
  | { do: 'refresh' }
  /** Nothing decided yet: wait for a change, at most this long. */
  | { do: 'wait'; wakeInMs: number };

export interface WatchDecision {
  memo: WatchMemo;
  step: WatchStep;
  /** The pod was seen waiting for a node for the first time (the warm pools then give way). */
  waitsForNode: boolean;
}

/** A trailer that settles the attempt by itself: the program exited on its own, or the launcher timed it out. */
export function settles(t: LauncherTrailer | null): t is LauncherTrailer {
  return !!t && !t.terminated && (t.signal === null || t.timedOut);
}

export function initialMemo(resumed?: PodProgress): WatchMemo {
  return { progress: { ...(resumed ?? {}) }, fresh: false };
}

export function decideWatch(setup: WatchSetup, memo: WatchMemo, facts: WatchFacts): WatchDecision {
  const { now } = facts;
  const progress = facts.pod ? observe(memo.progress, facts.pod, now) : { ...memo.progress };
  const waitsForNode = memo.progress.unschedulableSince === undefined && progress.unschedulableSince !== undefined;
  const next: WatchMemo = { ...memo, progress };
  const out = (step: WatchStep): WatchDecision => ({ memo: next, step, waitsForNode });
  const end = (e: AttemptEndNotCancelled, stopPod?: string): WatchDecision => {
    progress.waitingFor = undefined;
    return out({ do: 'end', end: e, ...(stopPod ? { stopPod } : {}) });
  };

  const refused = deliveryFailure(setup, facts);
  if (refused) return out({ do: 'end', end: refused });

  // The program's start as seen from outside: the container's for a mounted task, the acceptance for a handed one.
  if (setup.sandbox.task === 'mounted' && progress.containerStartedAt !== undefined)
    progress.programStartedAt ??= progress.containerStartedAt;
  if (setup.sandbox.task === 'handed' && facts.accepted) progress.programStartedAt ??= now;

  // The program outlived its time limit and the launcher has not said so: stop the sandbox from outside. Only a
  // followed log can show the launcher's word; a container already ended is the kubelet's to classify, and so is a
  // pod no longer there (a step resumed long after its program started knows the pod only from its heartbeat: if the
  // pod was deleted meanwhile, it was lost, whatever the clock says).
  const at = limitAt(setup, progress);
  if (
    setup.followLog &&
    progress.containerFinishedAt === undefined &&
    at !== undefined &&
    now >= at &&
    !facts.trailer &&
    progress.podName &&
    facts.pod
  )
    return end({ kind: 'deadline' }, progress.podName);

  if (settles(facts.trailer)) {
    const t = facts.trailer;
    return end({
      kind: 'finished',
      exitCode: t.exitCode,
      reason: t.timedOut ? 'TimedOut' : 'Completed',
      oomKilled: false,
    });
  }

  if (setup.sandbox.owner === 'job' && !facts.job && !facts.ownerRead) return out({ do: 'read-owner' });
  const verdict = classify({
    job: facts.job,
    pod: facts.pod,
    podGone: facts.podGone,
    progress,
    now,
    unschedulableGraceSeconds: setup.unschedulableGraceSeconds,
    owner: setup.sandbox.owner,
  });
  if (verdict.state === 'pending') {
    progress.waitingFor = verdict.detail;
    next.fresh = false;
    if (setup.giveUpAt !== undefined && now > setup.giveUpAt) return end({ kind: 'deadline' });
    return out({ do: 'wait', wakeInMs: wakeIn(setup, progress, facts, now) });
  }

  if (setup.followLog && containerRan(progress, facts.pod) && facts.log !== 'ended') {
    // No trailer settled it: before the kubelet's word decides, read what the container wrote (the log may still
    // be draining, or not open yet when the container ran and ended between two looks).
    next.drainSince ??= now;
    if (now - next.drainSince < LOG_DRAIN_MS) return out({ do: 'wait', wakeInMs: wakeIn(setup, progress, facts, now) });
  }

  if (!memo.fresh) {
    // Look once more before deciding: a pod event may still be on its way, and the Job's deadline condition may be
    // newer than the pod's status.
    next.fresh = true;
    return out({ do: 'refresh' });
  }

  if (setup.sandbox.task === 'handed' && !facts.accepted && verdict.state !== 'infra') {
    // The pod ended without ever taking the task: nothing of the program ran there.
    return end({
      kind: 'infra',
      error: infraError('DeliveryFailed', 'the warm sandbox ended before it accepted the task'),
    });
  }
  return end(endOf(verdict));
}

/** A handed task that ran nothing of ours: the launcher refused it, or accepted another one. */
function deliveryFailure(setup: WatchSetup, facts: WatchFacts): AttemptEndNotCancelled | undefined {
  if (setup.sandbox.task !== 'handed') return undefined;
  const { accepted, trailer } = facts;
  if (accepted && (accepted.executionId !== setup.executionId || accepted.attempt !== setup.attempt)) {
    return {
      kind: 'infra',
      error: infraError(
        'DeliveryFailed',
        `the warm sandbox accepted another task (${accepted.executionId} #${accepted.attempt})`,
      ),
    };
  }
  if (trailer && !accepted)
    return {
      kind: 'infra',
      error: infraError('DeliveryFailed', trailer.error ?? 'the warm sandbox ended before it accepted the task'),
    };
  return undefined;
}

/** When the time limit is enforced from outside: the program's start as seen here, its limit and the grace. */
function limitAt(setup: WatchSetup, progress: PodProgress): number | undefined {
  const start = progress.programStartedAt;
  return start === undefined ? undefined : start + setup.timeoutSeconds * 1000 + OUTSIDE_GRACE_MS;
}

/** How long to wait for the next event: a tick, or less when the outside time limit falls due before it. */
function wakeIn(setup: WatchSetup, progress: PodProgress, facts: WatchFacts, now: number): number {
  const at = limitAt(setup, progress);
  const due =
    at !== undefined && at > now && setup.followLog && !facts.trailer && progress.containerFinishedAt === undefined;
  return due ? Math.min(TICK_MS, at - now + 5) : TICK_MS;
}

/** Whether the container has run (so it has a log to read). */
function containerRan(progress: PodProgress, pod: V1Pod | undefined): boolean {
  const cs = pod?.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
  return progress.containerStartedAt !== undefined || !!(cs?.state?.running || cs?.state?.terminated);
}

function endOf(verdict: Exclude<Verdict, { state: 'pending' }>): AttemptEndNotCancelled {
  switch (verdict.state) {
    case 'finished':
      return { kind: 'finished', exitCode: verdict.exitCode, reason: verdict.reason, oomKilled: verdict.oomKilled };
    case 'deadline':
      return { kind: 'deadline' };
    case 'infra':
      return { kind: 'infra', error: verdict.error };
  }
}

/**
 * The decisions of a session run's step, as a pure function beside the one-shot watch's (watch.ts): what the step has
 * seen (the launcher's lines for this run, its channel, the session's pod) goes in, the next step comes out (answer,
 * report the sandbox lost, read the channel again from the pod's log, look at the pod on the apiserver, stop the
 * pod, or wait). activities/session-sandbox.ts does the I/O around it; test/unit/session-run.test.ts feeds it
 * sequences.
 *
 * The launcher's trailer for the run ends it. Without one, the pod decides: gone or ended (looked at on the
 * apiserver, never judged from a cache alone, after a moment for output still on its way) → the sandbox is lost, or
 * the run was ended by the pod's memory limit (`oom_killed`, as a one-shot run says); alive past the run's limit
 * and grace → the step stops the pod and reports it lost.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { AttemptEnd } from './attempt';
import type { LauncherTrailer } from './launcher-protocol';
import { CONTAINER_NAME } from './manifests';

export const SESSION_RUN = {
  /**
   * How long past a run's time limit the step waits before it stops the pod: the launcher interrupts the run at its
   * limit, gives the interpreter 2 s to come back, then restarts it (loading its checkpoint), all before its trailer.
   */
  graceMs: 15_000,
  /** Once the pod looks gone, how long its last lines may take to arrive before the verdict. */
  drainMs: 300,
  /** How often the pod is looked at on the apiserver when there is no pod cache. */
  lookMs: 1_000,
  /** With the pod cache (which says when the pod changes): a look now and then all the same, should it miss one. */
  cachedLookMs: 15_000,
  /** How many times a broken channel is read again from the pod's log before the step waits for the limit. */
  maxReopens: 10,
  /** Longest wait between two decisions. */
  tickMs: 250,
} as const;

export type SessionRunEnd = Exclude<AttemptEnd, { kind: 'cancelled' }>;

/** What the step has seen at one moment. */
export interface SessionRunFacts {
  now: number;
  trailer: LauncherTrailer | null;
  /** The channel the run's lines come on (the attach, or the pod's log): still open, or ended without the trailer. */
  channel: 'open' | 'broken';
  /** How many times the channel was read again from the log. */
  reopened: number;
  /** The pod as last seen (cache or apiserver); undefined: not there. */
  pod: V1Pod | undefined;
  /** When the pod was last read from the apiserver itself (undefined: never in this step). */
  lookedAt?: number;
  /** Whether `pod` is the apiserver's answer to the latest look (not a cache's view). */
  fresh: boolean;
  /** The step follows the worker's pod cache (which says when the pod changes); without it, it looks every lookMs. */
  cached: boolean;
}

export interface SessionRunSetup {
  pod: string;
  /** When the step stops waiting for the trailer: the handover, plus the task's limit, plus the grace. */
  giveUpAt: number;
}

/** What the step carries from one decision to the next. */
export interface SessionRunMemo {
  /** When the pod was first seen gone or ended (its last lines may still be on their way). */
  goneSince?: number;
}

export type SessionRunStep =
  /** The launcher's trailer for this run came: the run's end. */
  | { do: 'answer'; end: SessionRunEnd }
  /** The sandbox is lost under the run (never run again); `podGone`: the session needs a new pod. */
  | { do: 'lost'; message: string }
  /** The pod's memory limit ended it: the run's own doing, said as a one-shot run's is; the pod is gone. */
  | { do: 'oom' }
  /** Read the run from the pod's log again (the attach or the log stream broke), after this long. */
  | { do: 'reopen'; afterMs: number }
  /** Read the pod from the apiserver, then decide again. */
  | { do: 'look' }
  /** The launcher did not answer within the limit and grace: stop the pod, report the sandbox lost. */
  | { do: 'stop'; message: string }
  /** Nothing decided yet: wait for a change, at most this long. */
  | { do: 'wait'; ms: number };

/** Whether the pod can still run anything: present, not being deleted, not ended. */
export function podAlive(pod: V1Pod | undefined): boolean {
  return !!pod && !pod.metadata?.deletionTimestamp && !['Failed', 'Succeeded'].includes(pod.status?.phase ?? '');
}

/** Whether the pod's container was ended by its memory limit (the kernel's, or the sandbox's as a whole). */
export function podOomKilled(pod: V1Pod | undefined): boolean {
  const cs = pod?.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
  return cs?.state?.terminated?.reason === 'OOMKilled' || cs?.lastState?.terminated?.reason === 'OOMKilled';
}

/** A trailer's run end: the interpreter's own exit (a signal that ended it) is said apart from the program's. */
export function sessionRunEnd(t: LauncherTrailer): SessionRunEnd {
  if (t.error && !t.timedOut && t.signal !== null)
    return { kind: 'finished', exitCode: t.exitCode, reason: 'InterpreterExited', oomKilled: false };
  return { kind: 'finished', exitCode: t.exitCode, reason: t.timedOut ? 'TimedOut' : 'Completed', oomKilled: false };
}

export function decideSessionRun(setup: SessionRunSetup, facts: SessionRunFacts, memo: SessionRunMemo): SessionRunStep {
  const { now } = facts;
  if (facts.trailer) {
    // The launcher was being stopped (the pod deleted or evicted) when the run ended: the sandbox is lost.
    if (facts.trailer.terminated) return { do: 'lost', message: `session pod ${setup.pod} was stopped during the run` };
    return { do: 'answer', end: sessionRunEnd(facts.trailer) };
  }
  if (facts.channel === 'broken' && facts.reopened < SESSION_RUN.maxReopens)
    return { do: 'reopen', afterMs: Math.min(2000, 200 * (facts.reopened + 1)) };
  if (!podAlive(facts.pod)) {
    memo.goneSince ??= now;
    // What it wrote until then may still be on its way; and a verdict is never taken on a cache's view alone.
    if (now - memo.goneSince < SESSION_RUN.drainMs)
      return { do: 'wait', ms: memo.goneSince + SESSION_RUN.drainMs - now };
    if (!facts.fresh) return { do: 'look' };
    if (podOomKilled(facts.pod)) return { do: 'oom' };
    const how = facts.pod ? `ended (${facts.pod.status?.phase ?? 'deleted'})` : 'deleted';
    return { do: 'lost', message: `session pod ${setup.pod} was ${how} during the run` };
  }
  memo.goneSince = undefined;
  if (now > setup.giveUpAt) {
    // Looked at on the apiserver first: a pod the cache still shows may be gone (then it is lost, not stopped).
    if (!facts.fresh) return { do: 'look' };
    return {
      do: 'stop',
      message: `the session's launcher did not answer within the run's time limit; its pod was stopped`,
    };
  }
  const every = facts.cached ? SESSION_RUN.cachedLookMs : SESSION_RUN.lookMs;
  if (facts.lookedAt === undefined || now - facts.lookedAt >= every) return { do: 'look' };
  return { do: 'wait', ms: Math.min(SESSION_RUN.tickMs, setup.giveUpAt - now + 1) };
}

/**
 * A session run's decisions (core/session-run.ts), fed sequences of what its step sees: the trailer, the channel, the
 * pod (from the cache or the apiserver), the clock. Each sequence runs the decision loop as the step does and
 * checks the steps it takes and how it ends.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { LauncherTrailer } from '../../core/launcher-protocol';
import { CONTAINER_NAME } from '../../core/manifests';
import {
  decideSessionRun,
  SESSION_RUN,
  sessionRunEnd,
  type SessionRunFacts,
  type SessionRunMemo,
  type SessionRunStep,
} from '../../core/session-run';

const running: V1Pod = { metadata: { name: 'p' }, status: { phase: 'Running' } };
const deleting: V1Pod = { metadata: { name: 'p', deletionTimestamp: new Date() }, status: { phase: 'Running' } };
const oom: V1Pod = {
  metadata: { name: 'p' },
  status: {
    phase: 'Failed',
    containerStatuses: [
      {
        name: CONTAINER_NAME,
        image: 'i',
        imageID: '',
        ready: false,
        restartCount: 0,
        state: { terminated: { exitCode: 137, reason: 'OOMKilled' } },
      },
    ],
  },
};

const trailer = (t: Partial<LauncherTrailer> = {}): LauncherTrailer => ({
  exitCode: 0,
  signal: null,
  timedOut: false,
  terminated: false,
  stdoutBytes: 0,
  stderrBytes: 0,
  startedAt: 1,
  finishedAt: 2,
  error: null,
  ...t,
});

const setup = { pod: 'p', giveUpAt: 60_000 };
const facts = (f: Partial<SessionRunFacts>): SessionRunFacts => ({
  now: 0,
  trailer: null,
  channel: 'open',
  reopened: 0,
  pod: running,
  fresh: true,
  lookedAt: 0,
  cached: true,
  ...f,
});

test('the trailer answers: the exit code, the time limit, an interpreter a signal ended', () => {
  expect(decideSessionRun(setup, facts({ trailer: trailer({ exitCode: 1 }) }), {})).toEqual({
    do: 'answer',
    end: { kind: 'finished', exitCode: 1, reason: 'Completed', oomKilled: false },
  });
  expect(sessionRunEnd(trailer({ exitCode: 130, timedOut: true, error: 'x' }))).toMatchObject({ reason: 'TimedOut' });
  expect(sessionRunEnd(trailer({ exitCode: 137, signal: 9, error: 'the interpreter was killed' }))).toMatchObject({
    reason: 'InterpreterExited',
  });
  // Even with the pod gone since: its words came first.
  expect(decideSessionRun(setup, facts({ trailer: trailer(), pod: undefined }), {})).toMatchObject({ do: 'answer' });
});

test('a trailer written while the launcher was being stopped: the sandbox is lost, not an answer', () => {
  expect(decideSessionRun(setup, facts({ trailer: trailer({ terminated: true }) }), {})).toEqual({
    do: 'lost',
    message: 'session pod p was stopped during the run',
  });
});

test('a broken channel is read again from the log, backing off, up to its limit; then the pod decides', () => {
  const steps = [0, 1, 5, 9].map((reopened) => decideSessionRun(setup, facts({ channel: 'broken', reopened }), {}));
  expect(steps).toEqual([
    { do: 'reopen', afterMs: 200 },
    { do: 'reopen', afterMs: 400 },
    { do: 'reopen', afterMs: 1200 },
    { do: 'reopen', afterMs: 2000 },
  ]);
  expect(decideSessionRun(setup, facts({ channel: 'broken', reopened: SESSION_RUN.maxReopens }), {})).toMatchObject({
    do: 'wait',
  });
});

/** Runs the loop as the step does: `world(now)` is the pod on the apiserver and in the cache; ends at a verdict. */
function loop(world: (now: number) => { pod: V1Pod | undefined; trailerAt?: number }, cached = true) {
  const memo: SessionRunMemo = {};
  const seen: { pod: V1Pod | undefined; fresh: boolean; lookedAt?: number } = {
    pod: running,
    fresh: true,
    lookedAt: 0,
  };
  const steps: string[] = [];
  let lastCached = running as V1Pod | undefined;
  for (let now = 0, i = 0; i < 10_000; i++) {
    const w = world(now);
    // The cache tells of a change as it happens (it does not re-read).
    if (cached && w.pod !== lastCached) {
      lastCached = w.pod;
      seen.pod = w.pod;
      seen.fresh = false;
    }
    const trailerNow = w.trailerAt !== undefined && now >= w.trailerAt ? trailer() : null;
    const step: SessionRunStep = decideSessionRun(
      setup,
      { now, trailer: trailerNow, channel: 'open', reopened: 0, ...seen, cached },
      memo,
    );
    steps.push(step.do);
    if (step.do === 'look') {
      seen.pod = w.pod;
      seen.fresh = true;
      seen.lookedAt = now;
    } else if (step.do === 'wait') now += step.ms;
    else return { step, steps, now, looks: steps.filter((s) => s === 'look').length };
  }
  throw new Error('no verdict');
}

test('a pod deleted under the run: a moment for its last lines, a look on the apiserver, then lost', () => {
  const r = loop((now) => ({ pod: now >= 5_000 ? undefined : running }));
  expect(r.step).toEqual({ do: 'lost', message: 'session pod p was deleted during the run' });
  expect(r.now).toBeGreaterThanOrEqual(5_000 + SESSION_RUN.drainMs);
  expect(r.now).toBeLessThan(5_000 + SESSION_RUN.drainMs + SESSION_RUN.tickMs);
});

test("the pod's last lines arrive in the drain: the run is answered, not lost", () => {
  const r = loop((now) => ({ pod: now >= 5_000 ? deleting : running, trailerAt: 5_100 }));
  expect(r.step).toMatchObject({ do: 'answer' });
});

test('the memory limit ended it: oom, as a one-shot run says', () => {
  expect(loop((now) => ({ pod: now >= 3_000 ? oom : running })).step).toEqual({ do: 'oom' });
});

test('a cache that still shows a pod the apiserver no longer has: never a verdict on the cache alone', () => {
  // The cache never hears of a deletion: the look every cachedLookMs finds it.
  const memo: SessionRunMemo = {};
  const look = decideSessionRun(setup, facts({ now: SESSION_RUN.cachedLookMs, lookedAt: 0 }), memo);
  expect(look).toEqual({ do: 'look' });
  expect(decideSessionRun(setup, facts({ now: 1_000, pod: undefined, fresh: false }), memo)).toMatchObject({
    do: 'wait',
  });
  expect(
    decideSessionRun(setup, facts({ now: 1_000 + SESSION_RUN.drainMs, pod: undefined, fresh: false }), memo),
  ).toEqual({ do: 'look' });
});

test('no answer past the limit and grace: looked at first, then the pod is stopped and the run reported lost', () => {
  const r = loop(() => ({ pod: running }));
  expect(r.step).toEqual({
    do: 'stop',
    message: "the session's launcher did not answer within the run's time limit; its pod was stopped",
  });
  expect(r.now).toBeGreaterThan(setup.giveUpAt);
  expect(r.now).toBeLessThan(setup.giveUpAt + SESSION_RUN.tickMs + 2);
  // With the cache, the apiserver is asked a few times a minute, not every second.
  expect(r.looks).toBeLessThanOrEqual(Math.ceil(setup.giveUpAt / SESSION_RUN.cachedLookMs) + 1);
});

test('without a pod cache: a look every second', () => {
  const r = loop(() => ({ pod: running }), false);
  expect(r.step).toMatchObject({ do: 'stop' });
  expect(r.looks).toBeGreaterThanOrEqual(setup.giveUpAt / SESSION_RUN.lookMs - 1);
});

test('a pod that comes back to life in the cache (an update after a blip) resets the drain', () => {
  const memo: SessionRunMemo = {};
  expect(decideSessionRun(setup, facts({ now: 100, pod: undefined, fresh: false }), memo)).toMatchObject({
    do: 'wait',
  });
  expect(memo.goneSince).toBe(100);
  expect(decideSessionRun(setup, facts({ now: 200, pod: running }), memo)).toMatchObject({ do: 'wait' });
  expect(memo.goneSince).toBeUndefined();
});

/**
 * The watch's decisions (core/watch.ts), replayed on sequences captured from real attempts on the local stack by
 * scripts/capture-watch-sequences.ts (cold and warm: a program that exits, one that fails, one the launcher times
 * out, an OOM kill, a pod deleted under a running program), and on cases built from captured pod statuses.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { WatchRecord } from '../../activities/attempt-watch';
import type { AttemptEnd } from '../../core/attempt';
import type { LauncherTrailer } from '../../core/launcher-protocol';
import { SANDBOXES } from '../../core/sandbox';
import {
  decideWatch,
  initialMemo,
  LOG_DRAIN_MS,
  OUTSIDE_GRACE_MS,
  TICK_MS,
  type WatchFacts,
  type WatchMemo,
  type WatchSetup,
} from '../../core/watch';

interface Capture {
  scenario: { name: string; warm: boolean; timeoutSeconds?: number };
  executionId: string;
  end: AttemptEnd;
  records: WatchRecord[];
}

const DIR = path.join(__dirname, '..', 'fixtures', 'watch');
const captures: Capture[] = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(path.join(DIR, f), 'utf8')));

function setupOf(c: Capture, executionId: string): WatchSetup {
  return {
    executionId,
    attempt: 1,
    timeoutSeconds: c.scenario.timeoutSeconds ?? 60,
    unschedulableGraceSeconds: 30,
    sandbox: SANDBOXES[c.scenario.warm ? 'warm' : 'cold'],
    followLog: true,
  };
}

/** The execution the capture ran. */
const executionOf = (c: Capture): string => c.executionId;

function replay(c: Capture, setup: WatchSetup): WatchMemo {
  let memo = initialMemo();
  for (const r of c.records) {
    const d = decideWatch(setup, memo, r.facts);
    expect(d.step).toEqual(r.step);
    memo = d.memo;
  }
  return memo;
}

const byName = (name: string) => {
  const c = captures.find((x) => x.scenario.name === name);
  if (!c) throw new Error(`no capture ${name}: run npm run capture:watch-sequences`);
  return c;
};

test('every captured sequence is present and ends where the real attempt ended', () => {
  expect(captures.map((c) => c.scenario.name).sort()).toEqual([
    'cold-exit-3',
    'cold-oom',
    'cold-pod-deleted',
    'cold-succeeded',
    'cold-timed-out',
    'warm-pod-deleted',
    'warm-succeeded',
    'warm-timed-out',
  ]);
  for (const c of captures) {
    const last = c.records[c.records.length - 1];
    expect(last.step).toEqual({ do: 'end', end: c.end });
  }
});

test.each(captures.map((c) => [c.scenario.name, c] as const))('%s: the same decisions, replayed', (_n, c) => {
  replay(c, setupOf(c, executionOf(c)));
});

test("a program's own exit and the launcher's time limit settle at the trailer, without the kubelet", () => {
  expect(byName('cold-succeeded').end).toEqual({
    kind: 'finished',
    exitCode: 0,
    reason: 'Completed',
    oomKilled: false,
  });
  expect(byName('warm-succeeded').end).toEqual({
    kind: 'finished',
    exitCode: 0,
    reason: 'Completed',
    oomKilled: false,
  });
  expect(byName('cold-exit-3').end).toMatchObject({ kind: 'finished', exitCode: 3 });
  for (const name of ['cold-timed-out', 'warm-timed-out']) {
    const c = byName(name);
    expect(c.end).toMatchObject({ kind: 'finished', reason: 'TimedOut' });
    // Decided on the trailer: no refresh was needed.
    expect(c.records.some((r) => r.step.do === 'refresh')).toBe(false);
  }
});

test("an OOM kill and a deleted pod are the kubelet's to decide, after a fresh look", () => {
  expect(byName('cold-oom').end).toMatchObject({ kind: 'finished', oomKilled: true });
  for (const name of ['cold-oom', 'cold-pod-deleted', 'warm-pod-deleted']) {
    expect(byName(name).records.some((r) => r.step.do === 'refresh')).toBe(true);
  }
  expect(byName('cold-pod-deleted').end).toMatchObject({ kind: 'infra' });
  expect(byName('warm-pod-deleted').end).toMatchObject({ kind: 'infra' });
});

test('a warm sequence fed as cold decides differently: the sandbox kind is what the decisions read', () => {
  // A cold sandbox must read its Job before the kubelet decides; a warm one has none.
  const c = byName('warm-pod-deleted');
  const asCold = { ...setupOf(c, executionOf(c)), sandbox: SANDBOXES.cold };
  const steps = c.records.map((r) => decideWatch(asCold, initialMemo(), { ...r.facts, ownerRead: false }).step.do);
  expect(steps).toContain('read-owner');
});

// Built cases, from the captured pod of a warm run, for what the captures cannot show on demand.
const warm = byName('warm-succeeded');
const warmExec = executionOf(warm);
const runningPod: V1Pod = warm.records.find(
  (r) => r.facts.pod?.status?.containerStatuses?.[0]?.state?.running && r.facts.accepted,
)!.facts.pod!;
const base: WatchFacts = {
  now: Date.parse('2030-01-01T00:00:00Z'),
  pod: runningPod,
  podGone: false,
  ownerRead: false,
  trailer: null,
  accepted: null,
  log: 'open',
};
const warmSetup = setupOf(warm, warmExec);
const trailer = (t: Partial<LauncherTrailer>): LauncherTrailer => ({
  exitCode: 0,
  signal: null,
  timedOut: false,
  terminated: false,
  stdoutBytes: 0,
  stderrBytes: 0,
  startedAt: 0,
  finishedAt: 0,
  error: null,
  ...t,
});

test('a warm launcher that accepted another task, or ended without accepting, ran nothing of ours', () => {
  const other = decideWatch(warmSetup, initialMemo(), {
    ...base,
    accepted: { executionId: 'someone-else', attempt: 1, sha256: 'x' },
  });
  expect(other.step).toMatchObject({ do: 'end', end: { kind: 'infra', error: { reason: 'DeliveryFailed' } } });
  const refused = decideWatch(warmSetup, initialMemo(), {
    ...base,
    trailer: trailer({ exitCode: 125, error: 'task checksum mismatch' }),
  });
  expect(refused.step).toMatchObject({
    do: 'end',
    end: { kind: 'infra', error: { reason: 'DeliveryFailed', message: 'task checksum mismatch' } },
  });
});

test('a program past its limit with a silent launcher is stopped from outside, on time', () => {
  const accepted = { executionId: warmExec, attempt: 1, sha256: 'x' };
  const first = decideWatch(warmSetup, initialMemo(), { ...base, accepted });
  const startedAt = first.memo.progress.programStartedAt!;
  expect(startedAt).toBe(base.now);
  const limit = warmSetup.timeoutSeconds * 1000 + OUTSIDE_GRACE_MS;
  // Waking up just after the limit falls due, not a whole tick later.
  const near = decideWatch(warmSetup, first.memo, { ...base, accepted, now: base.now + limit - 500 });
  expect(near.step).toEqual({ do: 'wait', wakeInMs: 505 });
  const due = decideWatch(warmSetup, near.memo, { ...base, accepted, now: base.now + limit });
  expect(due.step).toEqual({ do: 'end', end: { kind: 'deadline' }, stopPod: runningPod.metadata!.name });
  expect(due.memo.progress.waitingFor).toBeUndefined();
  // A trailer that came in time settles it instead.
  const inTime = decideWatch(warmSetup, near.memo, {
    ...base,
    accepted,
    now: base.now + limit,
    trailer: trailer({ timedOut: true, signal: 9, exitCode: 137 }),
  });
  expect(inTime.step).toMatchObject({ do: 'end', end: { kind: 'finished', reason: 'TimedOut' } });
});

test('a step resumed past the time limit whose pod was deleted meanwhile reports the pod lost, not a deadline', () => {
  // What the earlier try's heartbeat recorded: the pod, and its program started long ago.
  const limit = warmSetup.timeoutSeconds * 1000 + OUTSIDE_GRACE_MS;
  const resumed = {
    podName: runningPod.metadata!.name!,
    containerStartedAt: base.now - limit - 10_000,
    programStartedAt: base.now - limit - 10_000,
  };
  const setup: WatchSetup = { ...warmSetup, sandbox: SANDBOXES.cold };
  const job: V1Job = { metadata: { name: 'j' }, status: { succeeded: 1 } };
  // The watch's loop: waits (for the rest of a log that will not come) and fresh looks, until an end.
  let memo = initialMemo(resumed);
  let now = base.now;
  let step: ReturnType<typeof decideWatch>['step'] | undefined;
  for (let i = 0; i < 5 && step?.do !== 'end'; i++) {
    const d = decideWatch(setup, memo, { ...base, now, pod: undefined, podGone: true, job, ownerRead: true });
    memo = d.memo;
    step = d.step;
    if (step.do === 'wait') now += LOG_DRAIN_MS;
  }
  // Lost is an infrastructure failure: the attempt is retried with fresh resources and the program's result comes.
  expect(step).toMatchObject({ do: 'end', end: { kind: 'infra', error: { reason: 'PodLost', retryable: true } } });
  // With the pod still there and running, the same clock stops it from outside.
  const running = decideWatch(setup, initialMemo(resumed), { ...base, job, ownerRead: true });
  expect(running.step).toEqual({ do: 'end', end: { kind: 'deadline' }, stopPod: runningPod.metadata!.name });
});

test('a sandbox that never comes is given up at its deadline', () => {
  const setup: WatchSetup = { ...warmSetup, sandbox: SANDBOXES.cold, giveUpAt: base.now + 1000 };
  const job: V1Job = { metadata: { name: 'j' }, status: {} };
  const waiting = decideWatch(setup, initialMemo(), { ...base, pod: undefined, job, ownerRead: true });
  expect(waiting.step).toEqual({ do: 'wait', wakeInMs: TICK_MS });
  const late = decideWatch(setup, waiting.memo, {
    ...base,
    pod: undefined,
    job,
    ownerRead: true,
    now: base.now + 1001,
  });
  expect(late.step).toEqual({ do: 'end', end: { kind: 'deadline' } });
});

test("the kubelet's word waits for the rest of the log, then for one fresh look", () => {
  const c = byName('cold-oom');
  const setup = setupOf(c, executionOf(c));
  const ended = c.records.find((r) => r.facts.pod?.status?.containerStatuses?.[0]?.state?.terminated)!.facts;
  const facts = { ...ended, log: 'open' as const };
  const draining = decideWatch(setup, initialMemo(), facts);
  expect(draining.step.do).toBe('wait');
  const stillDraining = decideWatch(setup, draining.memo, { ...facts, now: facts.now + LOG_DRAIN_MS - 1 });
  expect(stillDraining.step.do).toBe('wait');
  const drained = decideWatch(setup, stillDraining.memo, { ...facts, now: facts.now + LOG_DRAIN_MS });
  expect(drained.step).toEqual({ do: 'refresh' });
  const decided = decideWatch(setup, drained.memo, { ...facts, now: facts.now + LOG_DRAIN_MS });
  expect(decided.step).toMatchObject({ do: 'end', end: { kind: 'finished', oomKilled: true } });
});

test('the first look at a node-less pod is reported once', () => {
  const sample: { pod: V1Pod; job: V1Job } = JSON.parse(
    readFileSync(path.join(__dirname, '..', 'fixtures', 'pod-status', 'unschedulable.json'), 'utf8'),
  );
  const setup: WatchSetup = { ...warmSetup, sandbox: SANDBOXES.cold };
  const facts: WatchFacts = { ...base, pod: sample.pod, job: sample.job, ownerRead: true, log: 'none' };
  const first = decideWatch(setup, initialMemo(), facts);
  expect(first.waitsForNode).toBe(true);
  expect(first.step.do).toBe('wait');
  const again = decideWatch(setup, first.memo, { ...facts, now: facts.now + 1000 });
  expect(again.waitsForNode).toBe(false);
  const late = decideWatch(setup, again.memo, { ...facts, now: facts.now + 31_000 });
  expect(late.step).toEqual({ do: 'refresh' });
  const after = decideWatch(setup, late.memo, { ...facts, now: facts.now + 31_000 });
  expect(after.step).toMatchObject({ do: 'end', end: { kind: 'infra', error: { reason: 'Unschedulable' } } });
});

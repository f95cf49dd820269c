/**
 * Classification of real Job and pod objects, captured on the local stack by scripts/capture-pod-samples.ts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { classify, deadlineExceeded, observe } from '../../core/classify';

function sample(name: string): { job: V1Job; pod: V1Pod } {
  return JSON.parse(readFileSync(path.join(__dirname, '..', 'fixtures', 'pod-status', `${name}.json`), 'utf8'));
}

const NOW = Date.parse('2030-01-01T00:00:00Z');
function verdict(name: string, extra: { podGone?: boolean; unschedulableFor?: number } = {}) {
  const { job, pod } = sample(name);
  let progress = observe({}, pod, NOW - (extra.unschedulableFor ?? 0) * 1000);
  progress = observe(progress, pod, NOW);
  return classify({ job, pod, podGone: extra.podGone, progress, now: NOW, unschedulableGraceSeconds: 30 });
}

test('a finished program: exit code from the container status', () => {
  expect(verdict('succeeded')).toEqual({ state: 'finished', exitCode: 0, reason: 'Completed', oomKilled: false });
  expect(verdict('failed-exit-3')).toEqual({ state: 'finished', exitCode: 3, reason: 'Error', oomKilled: false });
});

test('an OOM kill is recognised', () => {
  expect(verdict('oom-killed')).toMatchObject({ state: 'finished', oomKilled: true, reason: 'OOMKilled' });
});

test('a running pod is pending, with its node and start recorded', () => {
  const { pod } = sample('running');
  const p = observe({}, pod, NOW);
  expect(p).toMatchObject({
    podName: pod.metadata!.name,
    nodeName: pod.spec!.nodeName,
    scheduledAt: NOW,
    containerStartedAt: NOW,
  });
  expect(verdict('running')).toEqual({ state: 'pending', detail: 'running' });
});

test('an image that cannot be pulled fails at once, not retried', () => {
  expect(verdict('image-pull-failed')).toMatchObject({
    state: 'infra',
    error: { reason: 'ImagePullFailed', retryable: false },
  });
});

test('an unschedulable pod waits out its grace period, then fails', () => {
  expect(verdict('unschedulable', { unschedulableFor: 5 })).toMatchObject({
    state: 'pending',
    detail: expect.stringMatching(/^unschedulable for 5 s/),
  });
  expect(verdict('unschedulable', { unschedulableFor: 31 })).toMatchObject({
    state: 'infra',
    error: { reason: 'Unschedulable', retryable: false },
  });
});

test("the Job's deadline wins over whatever the pod shows", () => {
  expect(deadlineExceeded(sample('deadline-exceeded').job)).toBe(true);
  expect(verdict('deadline-exceeded')).toEqual({ state: 'deadline' });
  expect(deadlineExceeded(sample('succeeded').job)).toBe(false);
});

test('a pod deleted from outside while it ran is an infrastructure failure, retried', () => {
  expect(verdict('deleted-while-running')).toMatchObject({
    state: 'infra',
    error: { reason: 'PodLost', retryable: true },
  });
  expect(verdict('running', { podGone: true })).toMatchObject({
    state: 'infra',
    error: { reason: 'PodLost', retryable: true },
  });
});

test('no pod yet is pending; a vanished Job is lost', () => {
  const { job } = sample('running');
  expect(classify({ job, pod: undefined, progress: {}, now: NOW, unschedulableGraceSeconds: 30 })).toMatchObject({
    state: 'pending',
  });
  expect(
    classify({ job: undefined, pod: undefined, progress: {}, now: NOW, unschedulableGraceSeconds: 30 }),
  ).toMatchObject({
    state: 'infra',
    error: { reason: 'JobLost', retryable: true },
  });
});

test('a Job whose deadline passes before any pod exists (quota full) is a typed infrastructure error', () => {
  const { job } = sample('deadline-exceeded');
  expect(classify({ job, pod: undefined, progress: {}, now: NOW, unschedulableGraceSeconds: 30 })).toMatchObject({
    state: 'infra',
    error: { reason: 'NoPodCreated', retryable: false },
  });
  // Once a pod had been seen, the same Job condition is the program's timeout.
  expect(
    classify({ job, pod: undefined, progress: { podName: 'p' }, now: NOW, unschedulableGraceSeconds: 30 }),
  ).toEqual({ state: 'deadline' });
});

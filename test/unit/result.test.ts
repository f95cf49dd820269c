import type { CollectedOutput } from '../../core/attempt';
import { buildResult, statusOf } from '../../core/result';

const out = (over: Partial<CollectedOutput['trailer']> = {}): CollectedOutput => ({
  available: true,
  stdout: { text: 'o', totalBytes: 1, capturedBytes: 1, truncated: false },
  stderr: { text: 'e', totalBytes: 1, capturedBytes: 1, truncated: false },
  trailer: { exitCode: 0, timedOut: false, terminated: false, startedAt: 1000, finishedAt: 1500, error: null, ...over },
  at: 2000,
});

test.each([
  [{ kind: 'finished', exitCode: 0, reason: 'Completed', oomKilled: false }, out(), 'succeeded', 0],
  [{ kind: 'finished', exitCode: 3, reason: 'Error', oomKilled: false }, out(), 'failed', 3],
  [{ kind: 'finished', exitCode: 137, reason: 'OOMKilled', oomKilled: true }, out(), 'oom_killed', null],
  [{ kind: 'finished', exitCode: 124, reason: 'Error', oomKilled: false }, out({ timedOut: true }), 'timed_out', null],
  [{ kind: 'finished', exitCode: 124, reason: 'Error', oomKilled: false }, out(), 'failed', 124],
  [{ kind: 'deadline' }, undefined, 'timed_out', null],
  [{ kind: 'cancelled' }, out(), 'cancelled', null],
  [
    { kind: 'infra', error: { reason: 'ImagePullFailed', message: 'm', retryable: false } },
    undefined,
    'infra_error',
    null,
  ],
  [{ kind: 'infra', error: { reason: 'SandboxLost', message: 'm', retryable: false } }, out(), 'sandbox_lost', null],
] as const)('%j -> %s', (end, output, status, exitCode) => {
  expect(statusOf(end, output)).toEqual({ status, exitCode });
});

test('buildResult carries streams, infra error and the program run time', () => {
  const r = buildResult({
    executionId: 'e',
    language: 'python',
    end: { kind: 'infra', error: { reason: 'PodLost', message: 'gone', retryable: true } },
    output: out(),
    attempts: 3,
    attemptErrors: [],
    kubernetes: { namespace: 'n', job: 'j', configMap: 'j', image: 'i' },
    timeline: [],
  });
  expect(r).toMatchObject({
    status: 'infra_error',
    stdout: 'o',
    stderr: 'e',
    stdoutInfo: { totalBytes: 1, capturedBytes: 1, truncated: false },
    error: { reason: 'PodLost' },
    attempts: 3,
    durationMs: 500,
  });
  expect(r.stdoutInfo).not.toHaveProperty('text');
});

/**
 * An execution nobody ran (core/queue.ts): the reason a client writes when it terminates one reads back to the same
 * account, from any client, and the workflow and the client build the same result from it.
 */
import { queueTimedOut, readUnserved, unservedReason, unservedResult, type Unserved } from '../../core/queue';

const cases: Unserved[] = [
  { kind: 'queueTimeout', limitSeconds: 300 },
  { kind: 'noWorker', taskQueue: 'durable-sandbox', waitedSeconds: 12 },
  { kind: 'noWorker', taskQueue: 'bench-1250-mx7gzj97', waitedSeconds: 0 },
];

test.each(cases)('the termination reason reads back: %j', (u) => {
  expect(readUnserved(unservedReason(u))).toEqual(u);
});

test('reasons written by earlier clients still read', () => {
  expect(readUnserved('QueueTimeout: no worker started it within 60 s')).toEqual({
    kind: 'queueTimeout',
    limitSeconds: 60,
  });
  expect(readUnserved('NoWorker: no worker polls task queue q-1 (waited 10 s)')).toEqual({
    kind: 'noWorker',
    taskQueue: 'q-1',
    waitedSeconds: 10,
  });
});

test('any other termination is not taken for one', () => {
  for (const reason of ['', 'terminated by operator', 'QueueTimeout', 'NoWorker: something else'])
    expect(readUnserved(reason)).toBeUndefined();
});

test('the result says nothing ran, and why, with the limit or the task queue it names', () => {
  const args = { executionId: 'e', language: 'python' as const, startedAt: 1000, namespace: 'ns', image: 'img' };
  const timeout = unservedResult(cases[0], args);
  expect(timeout).toMatchObject({
    status: 'infra_error',
    attempts: 0,
    error: { reason: 'QueueTimeout', retryable: false, message: expect.stringContaining('within 300 s') },
    timeline: [{ phase: 'started', at: 1000, attempt: 1 }],
  });
  const none = unservedResult(cases[1], args);
  expect(none.error).toMatchObject({
    reason: 'NoWorker',
    message: expect.stringContaining('task queue durable-sandbox'),
  });
  expect(none.attemptErrors).toEqual([none.error]);
});

test('the queue timeout: off at 0, passed only after the limit', () => {
  expect(queueTimedOut({ queueTimeoutSeconds: 0 }, 0, 1e12)).toBe(false);
  expect(queueTimedOut({ queueTimeoutSeconds: 5 }, 1000, 6000)).toBe(false);
  expect(queueTimedOut({ queueTimeoutSeconds: 5 }, 1000, 6001)).toBe(true);
});

/**
 * Executions nobody serves, on the real stack: without a worker an execution is `queued` (and says that no worker
 * polls), a waiting caller can stop waiting, and after DS_QUEUE_TIMEOUT_SECONDS it ends as infra_error
 * `QueueTimeout` with nothing created. A worker that comes later finds nothing to do; one that comes exactly at the
 * deadline may start it, and then whatever it made is still removed.
 */
import { SandboxClient, ExecutionWaitAbortedError, TemporalConnectionError, type ExecutionResult } from '../../client';
import { loadConfig } from '../../worker/config';
import {
  adminKube,
  eventually,
  leftovers,
  NOTHING_LEFT,
  startWorker,
  uniqueId,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();
const QUEUE_TIMEOUT = 4;
const clients: SandboxClient[] = [];
const workers: TestWorker[] = [];

/** A client of a task queue no worker polls (yet), whose policy gives up after QUEUE_TIMEOUT seconds. */
async function unservedClient(taskQueue: string, queueTimeoutSeconds = QUEUE_TIMEOUT): Promise<SandboxClient> {
  const { policy, temporal } = loadConfig(process.env);
  const client = await SandboxClient.connect({ temporal, taskQueue, policy: { ...policy, queueTimeoutSeconds } });
  clients.push(client);
  return client;
}

async function workerFor(taskQueue: string, env: Record<string, string> = {}): Promise<TestWorker> {
  const pending = startWorker({ DS_TASK_QUEUE: taskQueue, DS_QUEUE_TIMEOUT_SECONDS: String(QUEUE_TIMEOUT), ...env });
  starting.push(pending);
  const w = await pending;
  workers.push(w);
  return w;
}

/** Workers still starting when a test ended (e.g. it failed first): stopped too, so none outlives the file. */
const starting: Promise<TestWorker>[] = [];

afterAll(async () => {
  await Promise.allSettled(starting);
  await Promise.all(workers.map((w) => w.stop()));
  await Promise.all(clients.map((c) => c.close()));
});

function expectQueueTimeout(r: ExecutionResult): void {
  expect(r).toMatchObject({ status: 'infra_error', exitCode: null, attempts: 0, stdout: '', stderr: '' });
  expect(r.error).toMatchObject({ reason: 'QueueTimeout', retryable: false });
  expect(r.error?.message).toContain(`within ${QUEUE_TIMEOUT} s`);
}

test('without a worker it is queued, with 0 pollers, within 2 s; a caller can stop waiting and it stays queued', async () => {
  const queue = uniqueId('nobody');
  const client = await unservedClient(queue, 0);
  const executionId = uniqueId('queued');
  const startedAt = Date.now();
  await client.startExecution({ code: 'print(1)' }, { executionId });
  const state = await client.getExecution(executionId);
  expect(Date.now() - startedAt).toBeLessThan(2000);
  expect(state).toMatchObject({ executionId, state: 'queued', taskQueue: queue, pollers: 0 });

  const abort = new AbortController();
  setTimeout(() => abort.abort(), 300);
  const stopped = await client
    .executeCode({ code: 'print(1)' }, { executionId, signal: abort.signal })
    .catch((e: unknown) => e);
  expect(stopped).toBeInstanceOf(ExecutionWaitAbortedError);
  expect(stopped).toMatchObject({ executionId, state: 'queued', why: 'aborted' });
  const timedOut = await client
    .executeCode({ code: 'print(1)' }, { executionId, waitTimeoutMs: 500 })
    .catch((e: unknown) => e);
  expect(timedOut).toMatchObject({ executionId, state: 'queued', why: 'timeout' });
  await client.handle(executionId).terminate('test: nobody will serve this queue');
});

test('a waiting caller gets QueueTimeout at the deadline; nothing is created, and a worker started afterwards does nothing', async () => {
  const queue = uniqueId('late');
  const client = await unservedClient(queue);
  const executionId = uniqueId('qt');
  const startedAt = Date.now();
  const r = await client.executeCode({ code: 'print("must not run")' }, { executionId });
  const waited = Date.now() - startedAt;
  expectQueueTimeout(r);
  expect(waited).toBeGreaterThanOrEqual(QUEUE_TIMEOUT * 1000);
  expect((await client.handle(executionId).describe()).status.name).toBe('TERMINATED');

  const w = await workerFor(queue);
  await new Promise((res) => setTimeout(res, 3000));
  expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
  // Every caller, in every way, gets the same outcome.
  expect(await w.client.executeCode({ code: 'print("must not run")' }, { executionId })).toEqual(r);
  expect(await client.getExecution(executionId)).toEqual({ executionId, state: 'completed', result: r });
});

test('with no caller waiting, the first worker to see it after the deadline ends it without creating anything', async () => {
  const queue = uniqueId('unwatched');
  const client = await unservedClient(queue);
  const executionId = uniqueId('qt-worker');
  const handle = await client.startExecution({ code: 'print("must not run")', language: 'bash' }, { executionId });
  await new Promise((res) => setTimeout(res, (QUEUE_TIMEOUT + 1) * 1000));
  await workerFor(queue);
  const r = await handle.result();
  expectQueueTimeout(r);
  expect(r.language).toBe('bash');
  expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
  const kinds = (await handle.fetchHistory()).events
    ?.filter((e) => e.activityTaskScheduledEventAttributes)
    .map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name);
  expect(kinds).toEqual([]);
});

test('a worker that starts exactly at the deadline: the outcome is typed either way and nothing is left', async () => {
  const queue = uniqueId('race');
  const client = await unservedClient(queue);
  const executionId = uniqueId('qt-race');
  const startedAt = Date.now();
  // The worker's own check is off, so that if it takes the execution in time it really runs it.
  const late = new Promise<TestWorker>((resolve, reject) => {
    setTimeout(
      () =>
        void workerFor(queue, {
          DS_QUEUE_TIMEOUT_SECONDS: '0',
          DS_RECONCILE_INTERVAL_SECONDS: '5',
          DS_RECONCILE_MIN_AGE_SECONDS: '0',
        }).then(resolve, reject),
      QUEUE_TIMEOUT * 1000 - (Date.now() - startedAt),
    );
  });
  const r = await client.executeCode({ code: 'import time\ntime.sleep(2)\nprint("ran")' }, { executionId });
  await late;
  if (r.status === 'infra_error') expectQueueTimeout(r);
  else expect(r).toMatchObject({ status: 'succeeded', stdout: 'ran\n' });
  // Terminated while the worker was creating the sandbox, or cleaned up by the workflow: either way, nothing stays.
  await eventually(
    () => leftovers(kube, executionId),
    (l) => JSON.stringify(l) === JSON.stringify(NOTHING_LEFT),
    90_000,
  );
});

test('a wrong namespace and an unreachable server are typed errors that name the address and the namespace', async () => {
  const { temporal } = loadConfig(process.env);
  const wrong = await SandboxClient.connect({ temporal: { ...temporal, namespace: 'no-such-namespace' } }).catch(
    (e: unknown) => e,
  );
  expect(wrong).toBeInstanceOf(TemporalConnectionError);
  expect(wrong).toMatchObject({
    address: temporal.address,
    namespace: 'no-such-namespace',
    reason: 'namespace-not-found',
  });
  expect(String((wrong as Error).message)).toContain(
    `Temporal at ${temporal.address} has no namespace "no-such-namespace"`,
  );
  const away = await SandboxClient.connect({ temporal: { ...temporal, address: '127.0.0.1:1' } }).catch(
    (e: unknown) => e,
  );
  expect(away).toMatchObject({ address: '127.0.0.1:1', namespace: temporal.namespace, reason: 'unreachable' });
});

/**
 * What a caller is told when no worker serves, on the real stack, and that it is true:
 * - a session run nobody takes up in time is refused by the session from then on: "nothing ran" is certain (a worker
 *   that comes back afterwards does not run it);
 * - a run taken up whose worker then goes away may have run: the error says so, names the session and the run, and
 *   sending it again with the same run id gets its result without running it twice;
 * - an execution on a task queue that no worker ever serves is ended by the server itself at its bound, with a typed
 *   result that says nothing ran, whether or not anybody waited for it.
 */
import { NoWorkerError, SandboxClient } from '../../client';
import { unservedBoundSeconds } from '../../core/queue';
import { loadConfig } from '../../worker/config';
import { eventually, sessionPods, adminKube, startWorker, uniqueId, type TestWorker } from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();
const clients: SandboxClient[] = [];
const workers: TestWorker[] = [];

afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop()));
  await Promise.all(clients.map((c) => c.close()));
});

async function clientOf(
  taskQueue: string,
  options: {
    noWorkerSeconds?: number;
    runAcceptSeconds?: number;
    policy?: Partial<ReturnType<typeof loadConfig>['policy']>;
  } = {},
): Promise<SandboxClient> {
  const { policy, temporal } = loadConfig(process.env);
  const client = await SandboxClient.connect({
    temporal,
    taskQueue,
    policy: { ...policy, ...options.policy },
    ...(options.noWorkerSeconds !== undefined ? { noWorkerSeconds: options.noWorkerSeconds } : {}),
    ...(options.runAcceptSeconds !== undefined ? { runAcceptSeconds: options.runAcceptSeconds } : {}),
  });
  clients.push(client);
  return client;
}

async function workerOn(taskQueue: string): Promise<TestWorker> {
  const w = await startWorker({ DS_TASK_QUEUE: taskQueue });
  workers.push(w);
  return w;
}

async function stopWorker(w: TestWorker): Promise<void> {
  await w.stopWorker();
  workers.splice(workers.indexOf(w), 1);
  await w.stop();
}

test('a run no worker takes up in time: "nothing ran", and it is true (a worker that comes back does not run it)', async () => {
  const queue = uniqueId('no-take');
  const w = await workerOn(queue);
  const client = await clientOf(queue, { runAcceptSeconds: 3 });
  const session = await client.openSession();
  expect((await session.run('x = 1')).status).toBe('succeeded');
  // Nobody serves the session now (the worker is still listed as a poller for a minute).
  await stopWorker(w);
  const started = Date.now();
  const err = await session.run('x = 2\nprint("ran")', { runId: 'late-run' }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NoWorkerError);
  const e = err as NoWorkerError;
  expect(e.mayHaveRun).toBe(false);
  expect(e.runId).toBe('late-run');
  expect(e.sessionId).toBe(session.id);
  expect(e.message).toContain('nothing ran');
  expect(Date.now() - started).toBeLessThan(20_000);
  // A worker again: the late run reaches the session and is refused; it never ran.
  await workerOn(queue);
  const next = await session.run('print(x)');
  expect(next.stdout).toBe('1\n');
  expect(next.seq).toBe(2);
  expect((await session.state()).runs).toBe(2);
  await session.close();
  expect(await sessionPods(kube, session.id)).toEqual([]);
});

test('a run taken up whose worker goes away "may have run": the error names it, and its id gets its one result', async () => {
  const queue = uniqueId('may-run');
  const w = await workerOn(queue);
  const client = await clientOf(queue, { noWorkerSeconds: 3 });
  const session = await client.openSession();
  expect((await session.run('n = 0')).status).toBe('succeeded');
  const running = session.run('import time\ntime.sleep(6)\nn += 1\nprint("done", n)', { runId: 'taken-run' });
  running.catch(() => undefined);
  // The run is in the session (its step heartbeats), then the worker goes.
  await eventually(
    async () => (await client.temporal.workflow.getHandle(session.id).describe()).raw.pendingActivities ?? [],
    (steps) => steps.some((a) => a.activityType?.name === 'runInSession'),
    30_000,
  );
  await stopWorker(w);
  const err = await running.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NoWorkerError);
  const e = err as NoWorkerError;
  expect(e.mayHaveRun).toBe(true);
  expect(e.runId).toBe('taken-run');
  expect(e.message).not.toContain('nothing ran');
  expect(e.message).toContain(session.id);
  expect(e.message).toContain('taken-run');
  // With a worker again, the same run id gets the run's one result: it ran once.
  await workerOn(queue);
  const again = await session.run('import time\ntime.sleep(6)\nn += 1\nprint("done", n)', { runId: 'taken-run' });
  expect(again.stdout).toBe('done 1\n');
  expect((await session.run('print(n)')).stdout).toBe('1\n');
  await session.close();
});

test('an execution on a task queue no worker ever serves is ended by the server at its bound: typed, nothing ran', async () => {
  const queue = uniqueId('never-served');
  const policy = { queueTimeoutSeconds: 2, maxInfraAttempts: 1, startupAllowanceSeconds: 5 };
  const client = await clientOf(queue, { policy, noWorkerSeconds: 0 });
  const bound = unservedBoundSeconds(policy, 1)!;
  expect(bound).toBeLessThan(90);
  const handle = await client.startExecution(
    { code: 'print(1)', timeoutSeconds: 1 },
    { executionId: uniqueId('unserved') },
  );
  // Nobody waits for it: the server alone ends it.
  const described = await eventually(
    () => handle.describe(),
    (d) => d.status.name !== 'RUNNING',
    (bound + 30) * 1000,
  );
  expect(described.status.name).toBe('TIMED_OUT');
  const state = await client.getExecution(handle.workflowId);
  expect(state.state).toBe('completed');
  if (state.state !== 'completed') return;
  expect(state.result).toMatchObject({ status: 'infra_error', attempts: 0, error: { reason: 'QueueTimeout' } });
  expect(state.result.error?.message).toContain('nothing ran');
  expect(state.result.error?.message).toContain(`${bound} s`);
  // A caller that asks for it now gets the same typed result.
  const r = await client.executeCode({ code: 'print(1)', timeoutSeconds: 1 }, { executionId: handle.workflowId });
  expect(r.error?.reason).toBe('QueueTimeout');
});

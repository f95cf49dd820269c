/**
 * The fast path on the real stack: the result comes before cleanup (and cleanup still happens, even when the worker
 * dies in between), every way of attaching gives the same result, and live output reaches callers while the
 * program runs, without loss or repetition across a worker crash.
 */
import { SandboxClient, type ExecutionResult } from '../../client';
import type { WorkerSupervisor } from '../../scripts/chaos/supervisor';
import {
  adminKube,
  eventually,
  killableWorker,
  leftovers,
  NOTHING_LEFT,
  startWorker,
  uniqueId,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();
let w: TestWorker;

beforeAll(async () => {
  w = await startWorker();
});
afterAll(async () => w?.stop());

const at = (r: { phase: string; at: number }[], phase: string) => r.find((e) => e.phase === phase)?.at;

test('the result arrives before cleanup; the execution then cleans up and completes with the same result', async () => {
  const executionId = uniqueId('fast');
  const r = await w.client.executeCode({ code: 'print(1)' }, { executionId });
  const receivedAt = Date.now();
  expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stdout: '1\n' });
  expect(at(r.timeline, 'cleanedUp')).toBeUndefined();
  expect(await w.client.handle(executionId).result()).toEqual(r);
  const timeline = await w.client.timeline(executionId);
  expect(at(timeline, 'cleanedUp')).toBeGreaterThan(receivedAt);
  expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
});

test('attaching with the same id while it cleans up, and after it completed, gives the identical result', async () => {
  const executionId = uniqueId('attach');
  const input = { code: 'import random\nprint(random.random())' };
  const first = await w.client.executeCode(input, { executionId });
  // Cleanup waits for the pod to be gone (seconds): the execution is still open here.
  const during = await w.client.getExecution(executionId);
  expect(during).toMatchObject({ state: 'cleaning_up', result: first });
  expect(await w.client.executeCode(input, { executionId })).toEqual(first);
  await w.client.handle(executionId).result();
  expect(await w.client.getExecution(executionId)).toEqual({ executionId, state: 'completed', result: first });
  expect(await w.client.executeCode(input, { executionId })).toEqual(first);
  expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
});

test('live output reaches the caller and getExecution while the program still runs, each piece once and in order', async () => {
  const executionId = uniqueId('live');
  const code =
    'import sys, time\nfor i in range(6):\n    print("tick", i, flush=True)\n    print("tock", i, file=sys.stderr, flush=True)\n    time.sleep(1)';
  const chunks: { text: string; at: number }[] = [];
  let stderr = '';
  const seenByGetExecution: string[] = [];
  const pending = w.client.executeCode(
    { code },
    { executionId, onStdout: (text) => chunks.push({ text, at: Date.now() }), onStderr: (text) => (stderr += text) },
  );
  const observed = await eventually(
    () => w.client.getExecution(executionId).catch(() => undefined),
    // A whole line: print() may reach the pipe in pieces ("tick", " ", "1", "\n").
    (s) => s?.state === 'running' && (s.output?.stdout.text.includes('tick 1\n') ?? false),
    60_000,
  );
  if (observed?.state === 'running') seenByGetExecution.push(observed.output!.stdout.text);
  const r = await pending;
  expect(r.status).toBe('succeeded');
  const expected = Array.from({ length: 6 }, (_, i) => `tick ${i}\n`).join('');
  expect(r.stdout).toBe(expected);
  expect(chunks.map((c) => c.text).join('')).toBe(expected);
  expect(stderr).toBe(r.stderr);
  // More than one piece, and the first came while the program was still running (it ran ~6 s).
  expect(chunks.length).toBeGreaterThan(1);
  expect(chunks[0].at).toBeLessThan(at(r.timeline, 'containerFinished')!);
  expect(seenByGetExecution[0]).toMatch(/^tick 0\ntick 1\n/);
  await w.client.handle(executionId).result();
});

describe('with the worker in a child process that is SIGKILLed', () => {
  let supervisor: WorkerSupervisor;
  let client: SandboxClient;
  beforeAll(async () => {
    const worker = killableWorker('fast-kill');
    const { taskQueue, config } = worker;
    supervisor = worker.supervisor;
    client = await SandboxClient.connect({
      connection: { address: config.temporal.address },
      taskQueue,
      policy: config.policy,
    });
  });
  afterAll(async () => {
    await client?.close();
    await supervisor?.stop();
  });

  test('a worker killed between the result and the end of cleanup: the restarted one cleans up', async () => {
    const executionId = uniqueId('kill-cleanup');
    const r: ExecutionResult = await client.executeCode({ code: 'print("done")' }, { executionId });
    expect(supervisor.kill()).toBe(true);
    const killedAt = Date.now();
    expect(r.stdout).toBe('done\n');
    expect(await client.handle(executionId).result()).toEqual(r);
    expect(at(await client.timeline(executionId), 'cleanedUp')).toBeGreaterThan(killedAt);
    expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
    expect(supervisor.restarts).toBeGreaterThanOrEqual(1);
  });

  test('a worker killed mid-stream: live output is neither lost nor repeated', async () => {
    const executionId = uniqueId('kill-stream');
    const code = 'import time\nfor i in range(16):\n    print("line", i, flush=True)\n    time.sleep(0.5)';
    let text = '';
    let killed = false;
    const r = await client.executeCode(
      { code, timeoutSeconds: 120 },
      {
        executionId,
        onStdout: (piece) => {
          text += piece;
          if (!killed && text.includes('line 2\n')) killed = supervisor.kill();
        },
      },
    );
    expect(killed).toBe(true);
    const expected = Array.from({ length: 16 }, (_, i) => `line ${i}\n`).join('');
    expect(r).toMatchObject({ status: 'succeeded', stdout: expected, attempts: 1 });
    expect(text).toBe(expected);
    await client.handle(executionId).result();
    expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
  });
});

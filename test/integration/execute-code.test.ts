/**
 * executeCode end to end on the real stack: a real worker (with its ServiceAccount's credentials), real Jobs under
 * gVisor, real Temporal. Every case also checks that nothing of the execution is left in the cluster.
 */
import os from 'node:os';
import { WorkflowFailedError } from '@temporalio/client';
import fc from 'fast-check';
import { ApplicationFailure } from '@temporalio/common';
import { InvalidInputError, type ExecutionResult } from '../../client';
import { PHASES } from '../../core/types';
import {
  adminKube,
  JobRecorder,
  whenRunning,
  leftovers,
  leftoversAfterCompletion,
  NOTHING_LEFT,
  startWorker,
  uniqueId,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();
const jobs = new JobRecorder();
let w: TestWorker;

beforeAll(async () => {
  await jobs.start(kube);
  w = await startWorker();
});
afterAll(async () => {
  jobs.stop();
  await w?.stop();
});

async function run(code: string, extra: Record<string, unknown> = {}): Promise<ExecutionResult> {
  const executionId = uniqueId('exec');
  const result = await w.client.executeCode({ code, ...extra }, { executionId });
  expect(result.executionId).toBe(executionId);
  expect(await leftoversAfterCompletion(kube, w.client, executionId)).toEqual(NOTHING_LEFT);
  expect(jobs.jobsFor(executionId)).toBe(result.attempts);
  return result;
}

const phases = (r: ExecutionResult) => r.timeline.map((e) => e.phase);

test('a program that prints succeeds, under gVisor, with its timeline', async () => {
  const r = await run('import os\nprint("hello")\nprint(os.uname().release)');
  expect(r.status).toBe('succeeded');
  expect(r.exitCode).toBe(0);
  const [hello, kernel] = r.stdout.trim().split('\n');
  expect(hello).toBe('hello');
  expect(kernel).not.toBe(os.release());
  expect(r.stderr).toBe('');
  expect(r.stdoutInfo).toEqual({ totalBytes: r.stdout.length, capturedBytes: r.stdout.length, truncated: false });
  expect(r.attempts).toBe(1);
  expect(r.kubernetes.pod).toMatch(/^ds-exec-/);
  expect(r.kubernetes.node).toBeTruthy();
  // The result is returned before cleanup: its timeline ends with the output; the execution's goes on to cleanedUp.
  expect(phases(r)).toEqual(PHASES.filter((p) => p !== 'cleanedUp'));
  const times = r.timeline.map((e) => e.at);
  expect([...times].sort((a, b) => a - b)).toEqual(times);
  await w.client.handle(r.executionId).result();
  const full = await w.client.timeline(r.executionId);
  expect(full.map((e) => e.phase)).toEqual(PHASES);
});

test('a non-zero exit is a result with stdout and stderr apart', async () => {
  const r = await run('import sys\nprint("to stdout")\nprint("to stderr", file=sys.stderr)\nsys.exit(3)');
  expect(r.status).toBe('failed');
  expect(r.exitCode).toBe(3);
  expect(r.stdout).toBe('to stdout\n');
  expect(r.stderr).toBe('to stderr\n');
  expect(r.attempts).toBe(1);
});

test('bash programs run too', async () => {
  const r = await run('echo "$((6*7))"; echo oops >&2; exit 5', { language: 'bash' });
  expect(r).toMatchObject({ status: 'failed', exitCode: 5, stdout: '42\n', stderr: 'oops\n' });
});

test('input files and env are visible to the program', async () => {
  const r = await run('import os\nprint(open("/sandbox/files/data.txt").read().strip(), os.environ["GREETING"])', {
    files: [{ name: 'data.txt', content: 'from-a-file' }],
    env: { GREETING: 'hi' },
  });
  expect(r).toMatchObject({ status: 'succeeded', stdout: 'from-a-file hi\n' });
});

test('whatever text the validator accepts, the program sees byte for byte (env values and files)', async () => {
  // Arbitrary code points (fast-check, a fixed seed so a failure replays), with NUL in a file's contents.
  const values = fc.sample(fc.string({ unit: 'binary', minLength: 1, maxLength: 30 }), { numRuns: 8, seed: 20261129 });
  const env = Object.fromEntries(values.filter((v) => !v.includes('\u0000')).map((v, i) => [`V${i}`, v]));
  const file = `${values.join('\n')}\u0000end`;
  const code = `import os, json
print(json.dumps({k: os.environb[k.encode()].hex() for k in sorted(os.environ) if k.startswith("V")}))
print(open("/sandbox/files/f.txt", "rb").read().hex())`;
  const r = await run(code, { env, files: [{ name: 'f.txt', content: file }] });
  expect(r.status).toBe('succeeded');
  const [seenEnv, seenFile] = r.stdout.trim().split('\n');
  const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex');
  expect(JSON.parse(seenEnv)).toEqual(Object.fromEntries(Object.entries(env).map(([k, v]) => [k, hex(v)])));
  expect(seenFile).toBe(hex(file));
});

test('a program that sleeps past its timeout is timed_out within seconds of the deadline', async () => {
  const r = await run('import time\nprint("before", flush=True)\ntime.sleep(600)', { timeoutSeconds: 3 });
  expect(r.status).toBe('timed_out');
  expect(r.exitCode).toBeNull();
  expect(r.stdout).toBe('before\n');
  const at = (p: string) => r.timeline.find((e) => e.phase === p)!.at;
  const ran = at('containerFinished') - at('containerStarted');
  expect(ran).toBeGreaterThanOrEqual(3000);
  expect(ran).toBeLessThan(6000);
});

test('a memory hog is oom_killed', async () => {
  const r = await run('x = []\nwhile True:\n    x.append(bytearray(16 * 1024 * 1024))', { limits: { memory: '64Mi' } });
  expect(r.status).toBe('oom_killed');
  expect(r.exitCode).toBeNull();
});

test('5 MB of output is capped and flagged, and the run succeeds', async () => {
  const r = await run('import sys\nfor _ in range(5 * 1024):\n    sys.stdout.write("x" * 1023 + "\\n")');
  expect(r.status).toBe('succeeded');
  expect(r.stdoutInfo.totalBytes).toBe(5 * 1024 * 1024);
  expect(r.stdoutInfo.capturedBytes).toBe(w.config.policy.stdoutCapBytes);
  expect(r.stdoutInfo.truncated).toBe(true);
  expect(r.stdout.length).toBe(w.config.policy.stdoutCapBytes);
});

test('the same executionId started twice gives one Job and identical results', async () => {
  const executionId = uniqueId('idem');
  const input = { code: 'import random\nprint(random.random())' };
  const [a, b] = await Promise.all([
    w.client.executeCode(input, { executionId }),
    w.client.executeCode(input, { executionId }),
  ]);
  const c = await w.client.executeCode(input, { executionId });
  expect(a.status).toBe('succeeded');
  expect(b).toEqual(a);
  expect(c).toEqual(a);
  expect(jobs.jobsFor(executionId)).toBe(1);
  expect(await leftoversAfterCompletion(kube, w.client, executionId)).toEqual(NOTHING_LEFT);
});

test('cancelling mid-run stops the pod and returns cancelled with the output so far', async () => {
  const executionId = uniqueId('cancel');
  const handle = await w.client.startExecution(
    { code: 'import time\nprint("started", flush=True)\ntime.sleep(600)', timeoutSeconds: 300 },
    { executionId },
  );
  await whenRunning(kube, executionId);
  await new Promise((r) => setTimeout(r, 500));
  const cancelledAt = Date.now();
  await w.client.cancelExecution(executionId);
  const r = await handle.result();
  expect(r.status).toBe('cancelled');
  expect(r.exitCode).toBeNull();
  expect(r.stdout).toBe('started\n');
  expect(Date.now() - cancelledAt).toBeLessThan(20_000);
  expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
});

describe('bad input', () => {
  test('the client refuses it with a typed error naming the field and limit; nothing is started', async () => {
    const executionId = uniqueId('bad');
    const err = await w.client.executeCode({ code: '' }, { executionId }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err).toMatchObject({ field: 'code', limit: 'non-empty' });
    await expect(w.client.handle(executionId).describe()).rejects.toThrow(/not found/i);
  });

  test('the workflow refuses it too (when started directly) with a non-retryable InvalidInput failure', async () => {
    const executionId = uniqueId('bad-direct');
    const handle = await w.client.temporal.workflow.start('executeCode', {
      taskQueue: w.config.temporal.taskQueue,
      workflowId: executionId,
      args: [{ code: 'print(1)', timeoutSeconds: 10 ** 9 }],
    });
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause;
    expect(cause).toBeInstanceOf(ApplicationFailure);
    expect(cause).toMatchObject({ type: 'InvalidInput', nonRetryable: true });
    expect((cause as ApplicationFailure).details?.[0]).toMatchObject({ field: 'timeoutSeconds' });
    expect(jobs.jobsFor(executionId)).toBe(0);
    expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
  });
});

describe('infrastructure failures', () => {
  let broken: TestWorker;
  beforeAll(async () => {
    broken = await startWorker({ DS_IMAGE_PYTHON: 'localhost/durable-sandbox/no-such-image:1' });
  });
  afterAll(async () => broken?.stop());

  test('a missing image is a typed infra_error within seconds, not after the timeout', async () => {
    const executionId = uniqueId('noimage');
    const started = Date.now();
    const r = await broken.client.executeCode({ code: 'print(1)', timeoutSeconds: 120 }, { executionId });
    expect(r.status).toBe('infra_error');
    expect(r.error).toMatchObject({ reason: 'ImagePullFailed', retryable: false });
    expect(r.attempts).toBe(1);
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await leftoversAfterCompletion(kube, broken.client, executionId)).toEqual(NOTHING_LEFT);
  });
});

/**
 * The executeCode workflow's own logic, in seconds and without Kubernetes: the real workflow code on a Temporal dev
 * server (the stack's own CLI binary, nothing downloaded) with its activities mocked. These complement the
 * integration tests, which prove the same behaviour against the real cluster.
 */
import { randomUUID } from 'node:crypto';
import { Context, CancelledFailure } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { WithStartWorkflowOperation, type WorkflowHandle } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import type { SandboxActivities } from '../../activities';
import type { AttemptRef, AttemptSpec, CleanupResult, CollectedOutput, RunResult } from '../../core/attempt';
import { DEFAULT_POLICY, type ExecutionPolicy } from '../../core/policy';
import type { ExecutionResult, InfraError } from '../../core/types';
import { workflowBundle } from '../../worker/in-process';
import type { executeCode } from '../../workflows';
import { resultUpdate } from '../../workflows/queries';
import { useWorkflowEnvironment } from './temporal-cli';

const testing = useWorkflowEnvironment();

const POLICY: ExecutionPolicy = { ...DEFAULT_POLICY, searchAttributes: false, maxInfraAttempts: 3 };

function output(stdout = ''): CollectedOutput {
  const stream = (text: string) => ({ text, totalBytes: text.length, capturedBytes: text.length, truncated: false });
  return {
    available: true,
    stdout: stream(stdout),
    stderr: stream(''),
    outputFiles: [],
    trailer: null,
    at: Date.now(),
  };
}

function finished(exitCode: number, stdout = ''): RunResult {
  return {
    end: { kind: 'finished', exitCode, reason: exitCode ? 'Error' : 'Completed', oomKilled: false },
    progress: { podName: 'p' },
    output: output(stdout),
    acquiredAt: Date.now(),
    sandbox: 'cold',
  };
}

function infra(reason: InfraError['reason'], retryable: boolean): RunResult {
  return {
    end: { kind: 'infra', error: { reason, message: `${reason} (mocked)`, retryable } },
    progress: {},
    output: output(),
    sandbox: 'cold',
  };
}

/** A mocked run: what each call of the run step does, by attempt; and what the steps were asked to do. */
class Script {
  readonly runs: number[] = [];
  readonly cleanups: number[] = [];
  readonly collected: number[] = [];
  cleanupGate: Promise<void> = Promise.resolve();

  constructor(
    private readonly run: (spec: AttemptSpec) => Promise<RunResult>,
    private readonly policy: ExecutionPolicy = POLICY,
  ) {}

  activities(): Partial<SandboxActivities> {
    return {
      getExecutionPolicy: async () => this.policy,
      runSandbox: async (spec: AttemptSpec) => {
        this.runs.push(spec.attempt);
        return this.run(spec);
      },
      collectOutput: async (ref: AttemptRef & { podName?: string }) => {
        this.collected.push(ref.attempt);
        return output('printed before the cancel\n');
      },
      cleanup: async (ref: AttemptRef): Promise<CleanupResult> => {
        await this.cleanupGate;
        this.cleanups.push(ref.attempt);
        return { jobDeleted: true, configMapDeleted: true, podsRemaining: 0, at: Date.now() };
      },
    };
  }
}

async function withWorker<T>(script: Script, fn: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = `wf-${randomUUID()}`;
  const worker = await Worker.create({
    connection: testing.env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: script.activities(),
  });
  return worker.runUntil(fn(taskQueue));
}

function start(taskQueue: string, code = 'print(1)'): Promise<WorkflowHandle<typeof executeCode>> {
  return testing.env.client.workflow.start<typeof executeCode>('executeCode', {
    taskQueue,
    workflowId: `wf-${randomUUID()}`,
    args: [{ code }],
  });
}

test('an infrastructure failure retries with a fresh attempt and cleans the failed one; the program failing is not re-run', async () => {
  const script = new Script(async (spec) =>
    spec.attempt === 1 ? infra('PodLost', true) : finished(3, 'second attempt\n'),
  );
  const result = await withWorker(script, async (q) => (await start(q)).result());
  expect(result).toMatchObject({ status: 'failed', exitCode: 3, stdout: 'second attempt\n', attempts: 2 });
  expect(result.attemptErrors.map((e) => e.reason)).toEqual(['PodLost']);
  expect(script.runs).toEqual([1, 2]);
  expect(script.cleanups).toEqual([1, 2]);
});

test("a retryable failure that keeps happening stops after the policy's attempts, each one cleaned up", async () => {
  const script = new Script(async () => infra('Evicted', true));
  const result = await withWorker(script, async (q) => (await start(q)).result());
  expect(result).toMatchObject({ status: 'infra_error', attempts: 3, error: { reason: 'Evicted' } });
  expect(script.runs).toEqual([1, 2, 3]);
  expect(script.cleanups).toEqual([1, 2, 3]);
});

test('a failure that is not retryable ends the execution at once, and cleanup still runs', async () => {
  const script = new Script(async () => infra('Unschedulable', false));
  const result = await withWorker(script, async (q) => (await start(q)).result());
  expect(result).toMatchObject({
    status: 'infra_error',
    attempts: 1,
    error: { reason: 'Unschedulable', retryable: false },
  });
  expect(script.cleanups).toEqual([1]);
});

test('a run step that fails for good becomes a typed infra_error (its reason when it is a known one), and cleanup runs', async () => {
  const script = new Script(async () => {
    throw ApplicationFailure.nonRetryable('forbidden (mocked)', 'KubernetesForbidden');
  });
  const result = await withWorker(script, async (q) => (await start(q)).result());
  expect(result).toMatchObject({
    status: 'infra_error',
    error: { reason: 'KubernetesForbidden', message: 'forbidden (mocked)' },
  });
  expect(script.cleanups).toEqual([1]);
});

test('the run step reaching its deadline is timed_out', async () => {
  const script = new Script(async () => ({ ...finished(0), end: { kind: 'deadline' } }));
  const result = await withWorker(script, async (q) => (await start(q)).result());
  expect(result).toMatchObject({ status: 'timed_out', exitCode: null });
  expect(script.cleanups).toEqual([1]);
});

test('the result update answers before cleanup; the workflow completes after it with the same result', async () => {
  let release!: () => void;
  const script = new Script(async () => finished(0, 'early\n'));
  script.cleanupGate = new Promise<void>((r) => (release = r));
  await withWorker(script, async (taskQueue) => {
    const startWorkflowOperation = new WithStartWorkflowOperation<typeof executeCode>('executeCode', {
      taskQueue,
      workflowId: `wf-${randomUUID()}`,
      args: [{ code: 'print("early")' }],
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    const answered: ExecutionResult = await testing.env.client.workflow.executeUpdateWithStart(resultUpdate, {
      startWorkflowOperation,
      updateId: 'result',
    });
    expect(answered).toMatchObject({ status: 'succeeded', stdout: 'early\n' });
    expect(script.cleanups).toEqual([]);
    const handle = await startWorkflowOperation.workflowHandle();
    expect((await handle.describe()).status.name).toBe('RUNNING');
    release();
    expect(await handle.result()).toEqual(answered);
    expect(script.cleanups).toEqual([1]);
  });
});

/** Starts an execution, cancels it once its run step has started, and gives its result. */
function cancelOnceRunning(script: Script): Promise<ExecutionResult> {
  return withWorker(script, async (q) => {
    const handle = await start(q);
    while (script.runs.length === 0) await new Promise((r) => setTimeout(r, 50));
    await handle.cancel();
    return handle.result();
  });
}

test('cancelling stops the run step, keeps the output so far and cleans up: status cancelled', async () => {
  const script = new Script(async () => {
    // Runs until cancelled, as the real step does; heartbeats deliver the cancellation.
    for (;;) {
      Context.current().heartbeat();
      try {
        await Context.current().sleep(100);
      } catch (err) {
        if (err instanceof CancelledFailure) throw err;
        throw err;
      }
    }
  });
  const result = await cancelOnceRunning(script);
  expect(result).toMatchObject({ status: 'cancelled', exitCode: null, stdout: 'printed before the cancel\n' });
  expect(script.collected).toEqual([1]);
  expect(script.cleanups).toEqual([1]);
});

test('a cancel that comes while the run step is lost (it fails instead of taking the cancel) ends as cancelled', async () => {
  // As a step whose worker died under it: it never hears the cancel, and Temporal reports its failure.
  const script = new Script(async () => {
    await new Promise((r) => setTimeout(r, 1500));
    throw ApplicationFailure.retryable('the worker died (mocked)');
  });
  const result = await cancelOnceRunning(script);
  expect(result).toMatchObject({ status: 'cancelled', exitCode: null, stdout: 'printed before the cancel\n' });
  expect(script.runs).toEqual([1]);
  expect(script.cleanups).toEqual([1]);
});

test('an execution no worker started within the queue timeout ends as QueueTimeout, with no step run at all', async () => {
  const script = new Script(async () => finished(0), { ...POLICY, queueTimeoutSeconds: 1 });
  const taskQueue = `wf-${randomUUID()}`;
  const handle = await start(taskQueue);
  await new Promise((r) => setTimeout(r, 1500));
  const worker = await Worker.create({
    connection: testing.env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: script.activities(),
  });
  const result = await worker.runUntil(handle.result());
  expect(result).toMatchObject({ status: 'infra_error', attempts: 0, error: { reason: 'QueueTimeout' } });
  expect(script.runs).toEqual([]);
  expect(script.cleanups).toEqual([]);
});

test('bad input fails the workflow with a typed InvalidInput failure, before any step', async () => {
  const script = new Script(async () => finished(0));
  const err = await withWorker(script, async (q) => (await start(q, '')).result().catch((e: unknown) => e));
  expect(String((err as Error & { cause?: Error }).cause?.message)).toMatch(/code/);
  expect((err as { cause?: { type?: string } }).cause?.type).toBe('InvalidInput');
  expect(script.runs).toEqual([]);
});

/**
 * The typed client an agent backend uses: start an execution (idempotent by execution id), wait for its result,
 * look it up later, or cancel it. Input is validated here before anything is started, and again in the workflow.
 */
import { randomUUID } from 'node:crypto';
import {
  Client,
  Connection,
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowUpdateFailedError,
  type ConnectionOptions,
  type WorkflowHandle,
  type WorkflowStartOptions,
} from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { PodProgress } from '../core/classify';
import { DEFAULT_POLICY, DEFAULT_TASK_QUEUE, type ExecutionPolicy } from '../core/policy';
import type { ExecutionInput, ExecutionResult, LiveOutput } from '../core/types';
import { validateExecutionId, validateInput } from '../core/validate';
import type { executeCode as executeCodeWorkflow } from '../workflows';
import { progressQuery, resultUpdate, timelineQuery, type ExecutionProgress } from '../workflows/queries';
import { LiveOutputFollower, runHeartbeat, type OutputCallbacks } from './live-output';

export { InvalidInputError } from '../core/validate';
export type * from '../core/types';
export type { ExecutionProgress } from '../workflows/queries';
export type { PodProgress } from '../core/classify';
export type { OutputCallbacks, OutputChunkInfo } from './live-output';

export { DEFAULT_TASK_QUEUE };

export interface SandboxClientOptions {
  /** An existing Temporal client; otherwise one is made from `connection` (default: 127.0.0.1:7233). */
  client?: Client;
  connection?: ConnectionOptions;
  namespace?: string;
  taskQueue?: string;
  /** Limits the client checks before starting; the worker's policy is what the workflow enforces. */
  policy?: ExecutionPolicy;
}

export interface StartOptions {
  /** The execution's id and workflow id. Starting the same id again attaches to the same run. Default: random. */
  executionId?: string;
}

export interface ExecuteOptions extends StartOptions, OutputCallbacks {}

/** The update id every caller of executeCode uses: the server keeps one `result` update per execution. */
const RESULT_UPDATE_ID = 'result';

export type ExecutionState =
  | {
      executionId: string;
      state: 'running';
      progress: ExecutionProgress;
      /** What the run step last reported from the cluster (pod, node, what it waits for), when it runs. */
      pod?: PodProgress;
      /** The newest stdout and stderr of the running program (a bounded tail). */
      output?: LiveOutput;
      /** Where it runs, once it has a sandbox: a pod of the warm pool, or a Job made for it. */
      sandbox?: 'warm' | 'cold';
    }
  /** The result is known (and was returned to callers); the sandbox's objects are being removed. */
  | { executionId: string; state: 'cleaning_up'; result: ExecutionResult; progress: ExecutionProgress }
  | { executionId: string; state: 'completed'; result: ExecutionResult }
  | { executionId: string; state: 'failed' | 'cancelled' | 'terminated' | 'timed_out'; error: string };

type Handle = WorkflowHandle<typeof executeCodeWorkflow>;

function firstLine(code: string): string {
  const line = code.split('\n').find((l) => l.trim().length > 0) ?? '';
  return line.length > 80 ? `${line.slice(0, 77)}...` : line;
}

function preview(input: ExecutionInput): string {
  const lines = input.code.split('\n');
  const shown = lines.slice(0, 40).join('\n').slice(0, 2000);
  const more = lines.length > 40 || shown.length < input.code.length ? '\n…' : '';
  return `\`\`\`${input.language ?? 'python'}\n${shown}${more}\n\`\`\``;
}

/** The await step's heartbeat of an execution started before the fast path. */
function legacyAwaitProgress(raw: Awaited<ReturnType<Handle['describe']>>['raw']): PodProgress | undefined {
  const payload = raw.pendingActivities?.find((a) => a.activityType?.name === 'awaitCompletion')?.heartbeatDetails?.payloads?.[0];
  return payload ? (defaultPayloadConverter.fromPayload(payload) as PodProgress) : undefined;
}

export class SandboxClient {
  private constructor(
    readonly temporal: Client,
    private readonly taskQueue: string,
    private readonly policy: ExecutionPolicy,
    private readonly ownedConnection?: Connection,
  ) {}

  static async connect(options: SandboxClientOptions = {}): Promise<SandboxClient> {
    let connection: Connection | undefined;
    let client = options.client;
    if (!client) {
      connection = await Connection.connect(options.connection ?? { address: '127.0.0.1:7233' });
      client = new Client({ connection, namespace: options.namespace ?? 'default' });
    }
    return new SandboxClient(client, options.taskQueue ?? DEFAULT_TASK_QUEUE, options.policy ?? DEFAULT_POLICY, connection);
  }

  /**
   * Starts an execution, or attaches to the one already started (running or finished) under the same id.
   * Throws InvalidInputError (naming the field and the limit) before anything is started.
   */
  async startExecution(input: ExecutionInput, options: StartOptions = {}): Promise<Handle> {
    const { executionId, start } = this.startOptions(input, options);
    try {
      return await this.temporal.workflow.start<typeof executeCodeWorkflow>('executeCode', start);
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) return this.handle(executionId);
      throw err;
    }
  }

  /**
   * Runs code and returns its result as soon as the output is in, while the execution goes on to clean up (the
   * program failing is a result, not an exception). Starts the execution, or attaches to the one under the same id
   * in whatever state it is: every caller gets the same result. `onStdout` / `onStderr` receive the output while
   * the program runs, in order, each piece once.
   */
  async executeCode(input: ExecutionInput, options: ExecuteOptions = {}): Promise<ExecutionResult> {
    const { executionId, start } = this.startOptions(input, options);
    const live = options.onStdout || options.onStderr ? new LiveOutputFollower(this.handle(executionId), options) : undefined;
    try {
      const result = await this.awaitResult(executionId, start);
      await live?.finish(result);
      return result;
    } finally {
      await live?.stop();
    }
  }

  private startOptions(input: ExecutionInput, options: StartOptions) {
    const executionId = validateExecutionId(options.executionId ?? randomUUID());
    validateInput(input, this.policy);
    const start: WorkflowStartOptions<typeof executeCodeWorkflow> = {
      taskQueue: this.taskQueue,
      workflowId: executionId,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      staticSummary: `${input.language ?? 'python'}: ${firstLine(input.code)}`,
      staticDetails: preview(input),
    };
    return { executionId, start };
  }

  /** The `result` update, sent with the start (or to the running execution); a closed execution gives its result. */
  private async awaitResult(executionId: string, start: WorkflowStartOptions<typeof executeCodeWorkflow>): Promise<ExecutionResult> {
    const startWorkflowOperation = new WithStartWorkflowOperation<typeof executeCodeWorkflow>('executeCode', {
      ...start,
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    try {
      return await this.temporal.workflow.executeUpdateWithStart(resultUpdate, { startWorkflowOperation, updateId: RESULT_UPDATE_ID });
    } catch (err) {
      // The execution ended before (the update cannot reach a closed run), or ended without a result (bad input):
      // its outcome is the workflow's.
      if (err instanceof WorkflowExecutionAlreadyStartedError || err instanceof WorkflowUpdateFailedError) {
        return this.handle(executionId).result();
      }
      throw err;
    }
  }

  handle(executionId: string): Handle {
    return this.temporal.workflow.getHandle<typeof executeCodeWorkflow>(executionId);
  }

  /** Where an execution stands: its progress while it runs, its result once done. */
  async getExecution(executionId: string): Promise<ExecutionState> {
    const handle = this.handle(executionId);
    const { status, raw } = await handle.describe();
    switch (status.name) {
      case 'RUNNING':
      case 'CONTINUED_AS_NEW': {
        const progress = await handle.query(progressQuery);
        if (progress.result) return { executionId, state: 'cleaning_up', result: progress.result, progress };
        const run = runHeartbeat(raw);
        const pod = run?.progress ?? legacyAwaitProgress(raw);
        return {
          executionId,
          state: 'running',
          progress,
          ...(pod ? { pod } : {}),
          ...(run?.output ? { output: run.output } : {}),
          ...(run?.sandbox ? { sandbox: run.sandbox } : {}),
        };
      }
      case 'COMPLETED':
        return { executionId, state: 'completed', result: await handle.result() };
      default: {
        const state = status.name === 'TIMED_OUT' ? 'timed_out' : (status.name.toLowerCase() as 'failed');
        const error = await handle.result().then(
          () => status.name,
          (e: unknown) => (e instanceof Error ? (e.cause instanceof Error ? e.cause.message : e.message) : String(e)),
        );
        return { executionId, state, error };
      }
    }
  }

  /** The phase timeline so far. */
  async timeline(executionId: string) {
    return this.handle(executionId).query(timelineQuery);
  }

  /**
   * Requests cancellation. The sandbox pod is stopped, cleanup still runs, and the execution's result has status
   * 'cancelled' with whatever output the program had written.
   */
  async cancelExecution(executionId: string): Promise<void> {
    await this.handle(executionId).cancel();
  }

  async close(): Promise<void> {
    await this.ownedConnection?.close();
  }
}

/**
 * executeCode: runs one program in a fresh, hardened Kubernetes Job and returns a typed result. The `result`
 * update answers as soon as the output is in; the workflow then cleans up and completes with the same result.
 * Infrastructure failures retry the whole attempt with fresh resources; the program's own failure is a result,
 * never re-run.
 */
import { patched, sleep, workflowInfo } from '@temporalio/workflow';
import { queueTimedOut, unservedResult } from '../core/queue';
import { buildResult } from '../core/result';
import type { ExecutionInput, ExecutionResult, InfraError } from '../core/types';
import { getExecutionPolicy } from './activities';
import { recordExecution } from './metrics';
import { cleanupAttempt, runAttempt, type Execution } from './run-attempt';
import { Progress } from './progress';
import { ResultGate } from './result-gate';
import { executeCodeV1 } from './v1/execute-code';
import { validated } from './validated';

/** Executions started before the fast path have no marker for it and replay (and finish) as they began. */
export const FAST_PATH = 'fast-path';

export async function executeCode(input: ExecutionInput): Promise<ExecutionResult> {
  const gate = new ResultGate();
  return gate.settle(patched(FAST_PATH) ? fastPath(input, gate) : executeCodeV1(input));
}

async function fastPath(input: ExecutionInput, gate: ResultGate): Promise<ExecutionResult> {
  const executionId = workflowInfo().workflowId;
  const policy = await getExecutionPolicy();
  const request = validated(input, policy);
  const exec: Execution = {
    executionId,
    request,
    policy,
    progress: new Progress(policy.searchAttributes, request.language),
  };
  // Nobody served it in time (its callers may have given up): end without creating anything. Histories of
  // executions that were started in time never take this branch, so they replay as before.
  const startedAt = workflowInfo().startTime.getTime();
  if (queueTimedOut(policy, startedAt, Date.now())) {
    const result = unservedResult(
      { kind: 'queueTimeout', limitSeconds: policy.queueTimeoutSeconds },
      {
        executionId,
        language: request.language,
        startedAt,
        namespace: policy.namespace,
        image: policy.images[request.language],
      },
    );
    exec.progress.finish(result);
    gate.resolve(result);
    recordExecution(result, result.timeline);
    return result;
  }
  const attemptErrors: InfraError[] = [];
  for (let attempt = 1; ; attempt++) {
    const { end, output, refs, sandbox, network } = await runAttempt(exec, attempt);
    if (end.kind === 'infra') attemptErrors.push(end.error);
    if (end.kind === 'infra' && end.error.retryable && attempt < policy.maxInfraAttempts) {
      await cleanupAttempt(exec, attempt, sandbox);
      exec.progress.detail(
        `attempt ${attempt} failed (${end.error.reason}); retrying with fresh resources`,
        attempt + 1,
      );
      await sleep(attempt * 1000);
      continue;
    }
    const result = buildResult({
      executionId,
      language: request.language,
      end,
      output,
      attempts: attempt,
      attemptErrors,
      kubernetes: refs,
      timeline: [...exec.progress.timeline],
      sandbox,
      ...(network ? { network } : {}),
    });
    exec.progress.finish(result);
    gate.resolve(result);
    await cleanupAttempt(exec, attempt, sandbox);
    exec.progress.detail(`finished: ${result.status}; cleaned up`, attempt);
    recordExecution(result, exec.progress.timeline);
    return result;
  }
}

/**
 * executeCode: runs one program in a fresh, hardened Kubernetes Job and returns a typed result. Infrastructure
 * failures retry the whole attempt with fresh resources; the program's own failure is a result, never re-run.
 */
import { ApplicationFailure, sleep, workflowInfo } from '@temporalio/workflow';
import { buildResult } from '../core/result';
import type { ExecutionInput, ExecutionResult, InfraError } from '../core/types';
import { InvalidInputError, validateInput, type ExecutionRequest } from '../core/validate';
import type { ExecutionPolicy } from '../core/policy';
import { getExecutionPolicy } from './activities';
import { runAttempt } from './attempt';
import { Progress } from './progress';

export async function executeCode(input: ExecutionInput): Promise<ExecutionResult> {
  const executionId = workflowInfo().workflowId;
  const policy = await getExecutionPolicy();
  const request = validated(input, policy);
  const progress = new Progress(policy.searchAttributes, request.language);
  const attemptErrors: InfraError[] = [];
  for (let attempt = 1; ; attempt++) {
    const { end, output, refs } = await runAttempt({ executionId, request, policy, progress }, attempt);
    if (end.kind === 'infra') attemptErrors.push(end.error);
    if (end.kind === 'infra' && end.error.retryable && attempt < policy.maxInfraAttempts) {
      progress.detail(`attempt ${attempt} failed (${end.error.reason}); retrying with fresh resources`, attempt + 1);
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
      timeline: progress.timeline,
    });
    progress.finish(result);
    return result;
  }
}

function validated(input: ExecutionInput, policy: ExecutionPolicy): ExecutionRequest {
  try {
    return validateInput(input, policy);
  } catch (err) {
    if (err instanceof InvalidInputError) {
      throw ApplicationFailure.create({
        message: err.message,
        type: 'InvalidInput',
        nonRetryable: true,
        details: [{ field: err.field, limit: err.limit }],
      });
    }
    throw err;
  }
}

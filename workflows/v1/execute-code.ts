/**
 * executeCode as it was before the fast path: five steps per attempt, the result after cleanup. Kept, unchanged in
 * what it asks of Temporal, so executions started before the fast path replay and finish; new executions take the
 * fast path (workflows/execute-code.ts). Remove it, with its activities, once no such execution can be running.
 */
import { sleep, workflowInfo } from '@temporalio/workflow';
import { buildResult } from '../../core/result';
import type { ExecutionInput, ExecutionResult, InfraError } from '../../core/types';
import { getExecutionPolicy } from './activities';
import { runAttempt } from './attempt';
import { Progress } from '../progress';
import { validated } from '../validated';

export async function executeCodeV1(input: ExecutionInput): Promise<ExecutionResult> {
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

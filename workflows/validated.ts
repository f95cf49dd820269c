/** The workflow's own check of its input: bad input fails the execution, typed and non-retryable. */
import { ApplicationFailure } from '@temporalio/workflow';
import { STEP_FAILURES } from '../core/failures';
import type { ExecutionPolicy } from '../core/policy';
import type { ExecutionInput } from '../core/types';
import { InvalidInputError, validateInput, type ExecutionRequest } from '../core/validate';

export function validated(input: ExecutionInput, policy: ExecutionPolicy): ExecutionRequest {
  return checked(() => validateInput(input, policy));
}

/** Runs a check; its InvalidInputError becomes the workflow's typed, non-retryable InvalidInput failure. */
export function checked<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof InvalidInputError) {
      throw ApplicationFailure.create({
        message: err.message,
        type: STEP_FAILURES.invalidInput,
        nonRetryable: true,
        details: [{ field: err.field, limit: err.limit }],
      });
    }
    throw err;
  }
}

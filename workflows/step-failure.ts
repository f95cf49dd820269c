/** What an execution reports when one of its steps failed for good: the failure's type if it is a known reason. */
import { type ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import { isFailureReason } from '../core/failures';
import type { InfraError } from '../core/types';

export function stepFailure(err: ActivityFailure): InfraError {
  const cause = err.cause instanceof ApplicationFailure ? err.cause : undefined;
  const type = cause?.type ?? err.cause?.name;
  const message = err.cause?.message ?? err.message;
  if (isFailureReason(type)) return { reason: type, message, retryable: false };
  return { reason: 'StepFailed', message: `${type ?? 'failure'}: ${message}`, retryable: false };
}

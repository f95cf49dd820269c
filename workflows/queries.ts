/** What a client or an operator can ask an execution: queries, and the update that waits for its result. */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { ExecutionResult, PhaseEvent } from '../core/types';

export interface ExecutionProgress {
  attempt: number;
  /** The latest phase reached. */
  phase: PhaseEvent['phase'];
  /** What the execution is doing or waiting for, in words. */
  detail: string;
  /** Set once the result is known (the execution may still be cleaning up). */
  result?: ExecutionResult;
}

export const timelineQuery = defineQuery<PhaseEvent[]>('timeline');
export const progressQuery = defineQuery<ExecutionProgress>('progress');
/**
 * Answers with the result as soon as it is known, before cleanup: the client sends it with the workflow's start
 * (update-with-start) or to an execution that is already running, and gets the same result in every state.
 */
export const resultUpdate = defineUpdate<ExecutionResult>('result');

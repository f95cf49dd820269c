/** Queries an operator or a client can send to a running (or finished) execution. */
import { defineQuery } from '@temporalio/workflow';
import type { ExecutionResult, PhaseEvent } from '../core/types';

export interface ExecutionProgress {
  attempt: number;
  /** The latest phase reached. */
  phase: PhaseEvent['phase'];
  /** What the execution is doing or waiting for, in words. */
  detail: string;
  /** Set once the result is known (before cleanup has finished). */
  result?: ExecutionResult;
}

export const timelineQuery = defineQuery<PhaseEvent[]>('timeline');
export const progressQuery = defineQuery<ExecutionProgress>('progress');

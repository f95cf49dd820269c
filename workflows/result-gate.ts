/**
 * The `result` update's side of an execution: the handler waits until the result is known and answers with it, or
 * with the failure that ended the execution without one (bad input).
 */
import { allHandlersFinished, CancellationScope, condition, setHandler } from '@temporalio/workflow';
import type { ExecutionResult } from '../core/types';
import { resultUpdate } from './queries';

export class ResultGate {
  private result: ExecutionResult | undefined;
  private failure: { error: unknown } | undefined;

  constructor() {
    setHandler(resultUpdate, async () => {
      await condition(() => this.result !== undefined || this.failure !== undefined);
      if (this.failure) throw this.failure.error;
      return this.result!;
    });
  }

  resolve(result: ExecutionResult): void {
    this.result ??= result;
  }

  /** Passes an execution's end through to the waiting updates, and lets them answer before the workflow ends. */
  async settle(run: Promise<ExecutionResult>): Promise<ExecutionResult> {
    try {
      const result = await run;
      this.resolve(result);
      await handlersDone();
      return result;
    } catch (err) {
      this.failure ??= { error: err };
      await handlersDone();
      throw err;
    }
  }
}

/** Waits until every update handler has answered (also in an execution being cancelled). */
async function handlersDone(): Promise<void> {
  if (!allHandlersFinished()) await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
}

/**
 * A Temporal dev server for a workflow test file: the Temporal CLI binary the local stack builds (scripts/stack),
 * nothing downloaded, and the workflow bundle built once.
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { stackBinary } from '../../cli/local-stack';
import { workflowBundle } from '../../worker/in-process';

export function temporalCliPath(): string {
  return stackBinary('temporal', 'TEMPORAL_CLI_VERSION', 'temporal');
}

/** Starts this file's dev server before its tests and stops it after them; `.env` is the environment once started. */
export function useWorkflowEnvironment(): { readonly env: TestWorkflowEnvironment } {
  const holder = {} as { env: TestWorkflowEnvironment };
  jest.setTimeout(60_000);
  beforeAll(async () => {
    Runtime.install({ logger: new DefaultLogger('WARN') });
    holder.env = await TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: temporalCliPath() }, ui: false },
    });
    await workflowBundle();
  }, 120_000);
  afterAll(async () => {
    await holder.env?.teardown();
  });
  return holder;
}

/**
 * The activities of an execution, built from their dependencies so that the worker gives them a real cluster
 * and tests can give them another one.
 */
import type { ExecutionPolicy } from '../core/policy';
import { cleanupActivity } from './cleanup';
import { collectOutputActivity } from './collect-output';
import type { ActivityDeps } from './deps';
import { reconcileActivities } from './reconcile-steps';
import { runSandboxActivity } from './run-sandbox';
import { sessionActivities } from './session-sandbox';
import { v1Activities } from './v1';
import { warmPoolActivities } from './maintain-pool';
import { workspaceActivities } from './workspace';

export type { ActivityDeps } from './deps';
import { openSessionsQuery } from '../core/session';

export function createActivities(deps: ActivityDeps) {
  return {
    /** The worker's execution policy, recorded in the workflow's history so every step of a run agrees on it. */
    async getExecutionPolicy(): Promise<ExecutionPolicy> {
      return deps.policy;
    },
    /** How many sessions are open on a task queue (Temporal's visibility; it may lag a started session briefly). */
    async countOpenSessions(input: { taskQueue: string }): Promise<number> {
      if (!deps.temporal) return 0;
      const { count } = await deps.temporal.workflow.count(openSessionsQuery(input.taskQueue));
      return count;
    },
    runSandbox: runSandboxActivity(deps),
    collectOutput: collectOutputActivity(deps),
    cleanup: cleanupActivity(deps),
    ...reconcileActivities(deps),
    ...warmPoolActivities(deps),
    ...sessionActivities(deps),
    ...workspaceActivities(deps),
    ...v1Activities(deps),
  };
}

export type SandboxActivities = ReturnType<typeof createActivities>;

/**
 * The activities of an execution, built from their dependencies so that the worker gives them a real cluster
 * and tests can give them another one.
 */
import type { Client } from '@temporalio/client';
import type { ExecutionPolicy } from '../core/policy';
import { awaitCompletionActivity } from './await-completion';
import { cleanupActivity } from './cleanup';
import { collectOutputActivity } from './collect-output';
import { createCodeConfigMapActivity } from './create-code-config-map';
import { createJobActivity } from './create-job';
import type { ActivityDeps } from './deps';
import { reconcileActivities } from './reconcile';

export type { ActivityDeps } from './deps';

export function createActivities(deps: ActivityDeps, temporal?: Client) {
  return {
    /** The worker's execution policy, recorded in the workflow's history so every step of a run agrees on it. */
    async getExecutionPolicy(): Promise<ExecutionPolicy> {
      return deps.policy;
    },
    createCodeConfigMap: createCodeConfigMapActivity(deps),
    createJob: createJobActivity(deps),
    awaitCompletion: awaitCompletionActivity(deps),
    collectOutput: collectOutputActivity(deps),
    cleanup: cleanupActivity(deps),
    ...reconcileActivities(deps, temporal),
  };
}

export type SandboxActivities = ReturnType<typeof createActivities>;

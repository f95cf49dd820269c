/** What the activities need from the outside world; given to createActivities by the worker (or a test). */
import type { Client } from '@temporalio/client';
import type { ExecutionPolicy } from '../core/policy';
import type { PoolConfig } from '../core/pool';
import type { Kube } from './kube';

export interface ActivityDeps {
  kube: Kube;
  policy: ExecutionPolicy;
  /** Source of launcher/launcher.py, shipped into every sandbox. */
  launcherSource: string;
  /** The warm pool this worker's executions take sandboxes from (size 0: none). */
  pool?: PoolConfig;
  /** For the reconciler's questions and the pool's replenish signal. */
  temporal?: Client;
}

/** What the activities need from the outside world; given to createActivities by the worker (or a test). */
import type { Client } from '@temporalio/client';
import type { ExecutionPolicy } from '../core/policy';
import { sandboxLanguage, type Language } from '../core/languages';
import type { PoolConfig } from '../core/pool';
import type { WatchRecord } from './attempt-watch';
import type { Kube } from './kube';

/** The size of a language's warm pool for these activities (0: it has none). */
export function poolSize(deps: Pick<ActivityDeps, 'pool'>, language: Language): number {
  return deps.pool?.sizes?.[sandboxLanguage(language)] ?? deps.pool?.size ?? 0;
}

import type { EgressGateway } from './egress';
import type { WorkspaceStore } from './workspace-store';

export interface ActivityDeps {
  kube: Kube;
  policy: ExecutionPolicy;
  /** Source of launcher/launcher.py, shipped into every sandbox. */
  launcherSource: string;
  /** Source of launcher/workspace.py, run in a session's sandbox to save and restore its workspace. */
  workspaceSource: string;
  /** Where sessions keep their workspaces (unset: nowhere; a new pod gets files back by replay alone). */
  workspaces?: WorkspaceStore;
  /** The warm pools this worker's executions take sandboxes from: a size per language (0: none). */
  pool?: PoolConfig & { sizes?: Partial<Record<Language, number>> };
  /** For the reconciler's questions and the pool's replenish signal. */
  temporal?: Client;
  /** The egress gateway: where sandboxes reach it, where its records are read, the key shared with it. */
  egress?: EgressGateway;
  /** Receives every decision of every attempt's watch with what it was made from (scripts/capture-watch-sequences.ts). */
  recordWatch?: (entry: WatchRecord) => void;
}

/**
 * A session's workspace steps, as the session workflow (session.ts) takes them: save the workspace a run changed
 * after its answer (before the next run), put it back on a new pod, delete it at the end. A save or a restore that
 * cannot be done is said (in the state, in the run's `restored`), never thrown: the session goes on, replayed.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { SandboxActivities } from '../activities';
import type { SessionState } from '../core/session';
import type { ExecutionPolicy } from '../core/policy';
import { failedWorkspace, type SavedWorkspace } from '../core/workspace';
import { HEARTBEAT_TIMEOUT } from './activities';

// A few tries, then the session goes on without.
export const { saveWorkspace, restoreWorkspace, dropWorkspace } = proxyActivities<SandboxActivities>({
  startToCloseTimeout: '3m',
  heartbeatTimeout: HEARTBEAT_TIMEOUT,
  retry: { initialInterval: '500ms', maximumInterval: '5s', maximumAttempts: 3 },
});

/** The saved workspace, and how many of the session's replay entries came before its save. */
export type KeptWorkspace = SavedWorkspace & { replayed: number };
/** A run changed the workspace: what its save needs. */
export interface PendingSave {
  seq: number;
  sig: string;
  pod: string;
  replayed: number;
}

interface WithWorkspace {
  state: SessionState;
  policy: ExecutionPolicy;
  workspace?: KeptWorkspace;
  pendingSave?: PendingSave;
}

/** Saves the workspace a run changed (see runOne); a save that cannot be done leaves the one before and says why. */
export async function saveChangedWorkspace(c: WithWorkspace): Promise<void> {
  const p = c.pendingSave;
  c.pendingSave = undefined;
  if (!p) return;
  const { state: s, policy } = c;
  try {
    const saved = await saveWorkspace({
      sessionId: s.sessionId,
      namespace: policy.namespace,
      pod: p.pod,
      seq: p.seq,
      sig: p.sig,
      maxBytes: policy.workspaceMaxBytes ?? 0,
    });
    if (failedWorkspace(saved)) {
      s.workspace = { error: saved.error };
      return;
    }
    c.workspace = { ...saved, replayed: p.replayed };
    s.workspace = { seq: saved.seq, bytes: saved.bytes };
  } catch (err) {
    s.workspace = { error: `saving it failed: ${(err as Error).message}` };
  }
}

/** Puts the saved workspace back on a new pod; says how it went (a failure is said, not thrown). */
export async function restoreSaved(
  c: WithWorkspace,
  saved: SavedWorkspace,
  pod: string,
): Promise<{ bytes: number; seq: number; ms: number } | { error: string }> {
  const from = Date.now();
  try {
    const r = await restoreWorkspace({ sessionId: c.state.sessionId, namespace: c.policy.namespace, pod, saved });
    return failedWorkspace(r) ? r : { ...r, ms: Date.now() - from };
  } catch (err) {
    return { error: `restoring it failed: ${(err as Error).message}` };
  }
}

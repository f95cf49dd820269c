/**
 * A session's workspace steps, as the session workflow (session.ts) takes them: after a run's answer (before the next
 * run), a snapshot of the session when the run changed its files or its interpreter's state (the launcher's
 * checkpoint); on a new pod, the newest snapshot put back (files and state); at the end, all of it deleted. A save or
 * a restore that cannot be done is said (in the state, in the run's `restored`), never thrown: the session goes on,
 * its runs replayed. Sessions from before snapshots keep one workspace object (saveChangedWorkspace's old half).
 */
import { proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { SandboxActivities } from '../activities';
import type { LauncherCheckpoint } from '../core/launcher-protocol';
import type { SessionState } from '../core/session';
import type { ExecutionPolicy } from '../core/policy';
import {
  failedWorkspace,
  SNAPSHOTS_KEPT_DEFAULT,
  snapshotsToDrop,
  type SavedWorkspace,
  type Snapshot,
} from '../core/workspace';
import { HEARTBEAT_TIMEOUT } from './activities';

// A few tries, then the session goes on without.
export const { saveWorkspace, restoreWorkspace, dropWorkspace, saveSnapshot, copySnapshot } =
  proxyActivities<SandboxActivities>({
    startToCloseTimeout: '3m',
    heartbeatTimeout: HEARTBEAT_TIMEOUT,
    retry: { initialInterval: '500ms', maximumInterval: '5s', maximumAttempts: 3 },
  });
// The checkpoint's line at the end of the pod's log: read in the worker, no task queue between.
const { awaitCheckpoint } = proxyLocalActivities<SandboxActivities>({
  startToCloseTimeout: '3m',
  retry: { initialInterval: '200ms', maximumInterval: '2s', maximumAttempts: 3 },
});
/** How long the launcher may take to checkpoint a run's state before the snapshot goes without it. */
const CHECKPOINT_WAIT_MS = 120_000;

/** The saved workspace, and how many of the session's replay entries came before its save. */
export type KeptWorkspace = SavedWorkspace & { replayed: number };
/** A run changed the workspace: what its save needs. */
export interface PendingSave {
  seq: number;
  sig: string;
  pod: string;
  replayed: number;
}

/** A run whose session keeps snapshots ended: what deciding on (and taking) its snapshot needs. */
export interface PendingSnapshot {
  seq: number;
  /** The launcher's number of the run (its `k` line's). */
  launcherSeq: number;
  pod: string;
  /** The launcher's digest of the workspace after the run (null: too many entries to keep), and at its start. */
  sig: string | null;
  base?: string | null;
  /** The run's task asked for a checkpoint of the interpreter's state. */
  checkpointed: boolean;
  replayed: number;
}

interface WithWorkspace {
  state: SessionState;
  policy: ExecutionPolicy;
  workspace?: KeptWorkspace;
  pendingSave?: PendingSave;
  snapshots?: Snapshot[];
  pendingSnapshot?: PendingSnapshot;
}

/** What the session's state says of its snapshots. */
function showSnapshots(c: WithWorkspace): void {
  c.state.snapshots = (c.snapshots ?? []).map((x) => ({ seq: x.seq, bytes: x.bytes, state: !!x.state }));
}

/**
 * After a run of a session that keeps snapshots: its checkpoint (the launcher's `k` line), and a snapshot when the
 * run changed the files or the state; the newest `snapshotsKept` are kept. Said in the state when it cannot be.
 */
async function saveSnapshotAfter(c: WithWorkspace, p: PendingSnapshot): Promise<void> {
  const { state: s, policy } = c;
  let checkpoint: LauncherCheckpoint | undefined;
  if (p.checkpointed) {
    const k = await awaitCheckpoint({
      namespace: policy.namespace,
      pod: p.pod,
      launcherSeq: p.launcherSeq,
      timeoutMs: CHECKPOINT_WAIT_MS,
    }).catch((err: Error) => ({ error: `its checkpoint could not be read: ${err.message}` }));
    if ('seq' in k) checkpoint = k;
    if (k.error) s.workspace = { error: `the interpreter's state is not kept: ${k.error}` };
  }
  const last = c.snapshots?.[c.snapshots.length - 1];
  const keptSig = last?.sig ?? c.workspace?.sig ?? p.base;
  const stateChanged = !!checkpoint?.sha && !checkpoint.error && checkpoint.sha !== last?.state?.sha;
  if (p.sig === null) {
    s.workspace = { error: 'the workspace has too many entries to be kept' };
    return;
  }
  if (p.sig === keptSig && !stateChanged) {
    // The run changed nothing the snapshot holds: a restore from it need not run it again.
    if (last && checkpoint?.sha && checkpoint.sha === last.state?.sha) last.replayed = p.replayed;
    return;
  }
  const kept = policy.snapshotsKept ?? SNAPSHOTS_KEPT_DEFAULT;
  const drop = snapshotsToDrop([...(c.snapshots ?? []), { seq: p.seq } as Snapshot], kept).map((x) => x.seq);
  try {
    const saved = await saveSnapshot({
      sessionId: s.sessionId,
      namespace: policy.namespace,
      pod: p.pod,
      seq: p.seq,
      sig: p.sig,
      replayed: p.replayed,
      ...(checkpoint && !checkpoint.error ? { state: checkpoint } : {}),
      maxBytes: policy.workspaceMaxBytes ?? 0,
      drop,
    });
    if (failedWorkspace(saved)) {
      s.workspace = { error: saved.error };
      return;
    }
    c.snapshots = [...(c.snapshots ?? []).filter((x) => !drop.includes(x.seq)), saved];
    s.workspace = { seq: saved.seq, bytes: saved.bytes };
    showSnapshots(c);
  } catch (err) {
    s.workspace = { error: `saving it failed: ${(err as Error).message}` };
  }
}

/** Saves what a run changed (see runOne); a save that cannot be done leaves the one before and says why. */
export async function saveChangedWorkspace(c: WithWorkspace): Promise<void> {
  const pending = c.pendingSnapshot;
  c.pendingSnapshot = undefined;
  if (pending) return saveSnapshotAfter(c, pending);
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

/** Puts the saved workspace (or snapshot) back on a new pod; says how it went (a failure is said, not thrown). */
export async function restoreSaved(
  c: WithWorkspace,
  saved: SavedWorkspace,
  pod: string,
  snapshot = false,
): Promise<{ bytes: number; seq: number; ms: number } | { error: string }> {
  const from = Date.now();
  try {
    const r = await restoreWorkspace({
      sessionId: c.state.sessionId,
      namespace: c.policy.namespace,
      pod,
      saved,
      ...(snapshot ? { snapshot: { key: saved.seq } } : {}),
    });
    return failedWorkspace(r) ? r : { ...r, ms: Date.now() - from };
  } catch (err) {
    return { error: `restoring it failed: ${(err as Error).message}` };
  }
}

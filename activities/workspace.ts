/**
 * The steps that keep a session's workspace outside its pod: save it after a run that changed it, put it back on a
 * new pod, and delete it when the session ends. launcher/workspace.py does the work in the sandbox, run through
 * pods/exec; the bytes go between the exec and the store, never through Temporal. A save or a restore that cannot be
 * done answers why instead of failing: the session goes on, its runs replayed as before.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { STEP_FAILURES } from '../core/failures';
import { LAUNCHER_INTERPRETER } from '../core/languages';
import type { LauncherCheckpoint } from '../core/launcher-protocol';
import { CONTAINER_NAME } from '../core/manifests';
import { checkpointOf } from '../core/output';
import {
  WORKSPACE_ROOT,
  type SavedWorkspace,
  type Snapshot,
  type WorkspaceFailure,
  type WorkspaceSaveResult,
} from '../core/workspace';
import type { ActivityDeps } from './deps';
import { execInSandbox } from './exec';
import { apiStatus, kubeCallOrMissing } from './kube';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

export function workspaceActivities(deps: ActivityDeps) {
  const store = () => {
    if (!deps.workspaces)
      throw ApplicationFailure.nonRetryable(
        'this worker has no workspace store (DS_WORKSPACE_STORE)',
        STEP_FAILURES.misconfigured,
      );
    return deps.workspaces;
  };
  // The launcher's interpreter, which every sandbox image has.
  const helper = (mode: 'save' | 'restore') => [LAUNCHER_INTERPRETER, '-c', deps.workspaceSource, mode, WORKSPACE_ROOT];
  /** Runs the helper in the pod; undefined when the pod is gone or ended (an answer, not a failure to retry). */
  const inPod = async (args: Parameters<typeof execInSandbox>[1]) => {
    try {
      return await execInSandbox(deps.kube, args);
    } catch (err) {
      const code = apiStatus(err)?.code ?? apiStatus((err as { cause?: unknown })?.cause)?.code;
      if (code === 404 || code === 400) return undefined;
      throw err;
    }
  };
  /** The session's workspace (its checkpoint included) as a tar.gz, read from its pod; or why it could not be. */
  const tarOf = async (
    input: { namespace: string; pod: string; sessionId: string; maxBytes: number },
    what: 'the workspace' | 'the snapshot',
  ): Promise<{ stdout: Buffer } | WorkspaceFailure> => {
    const ctx = Context.current();
    const out = await inPod({
      namespace: input.namespace,
      pod: input.pod,
      command: helper('save'),
      maxStdoutBytes: input.maxBytes,
      onProgress: (bytes) => ctx.heartbeat({ bytes }),
      what: `save ${what} of session ${input.sessionId}`,
    });
    if (!out) return { error: `its pod ${input.pod} was gone before ${what} was saved` };
    if (out.overflow)
      return { error: `the workspace is larger than ${mib(input.maxBytes)} compressed (DS_WORKSPACE_MAX_BYTES)` };
    if (out.exitCode !== 0)
      return { error: `saving ${what} failed (exit ${out.exitCode ?? 'none'}): ${out.stderr.trim()}`.trim() };
    return { stdout: out.stdout };
  };

  return {
    /** Saves the session's workspace from its pod to the store: the session's one object, replaced whole. */
    async saveWorkspace(input: {
      sessionId: string;
      namespace: string;
      pod: string;
      seq: number;
      sig: string;
      maxBytes: number;
    }): Promise<WorkspaceSaveResult> {
      const workspaces = store();
      const out = await tarOf(input, 'the workspace');
      if ('error' in out) return out;
      const saved: SavedWorkspace = {
        seq: input.seq,
        sig: input.sig,
        bytes: out.stdout.length,
        sha256: sha256(out.stdout),
      };
      await workspaces.put(input.sessionId, out.stdout, { seq: String(input.seq), sha256: saved.sha256 });
      return saved;
    },

    /** Puts the saved workspace back in the session's (new) pod: what it held then, nothing else. */
    async restoreWorkspace(input: {
      sessionId: string;
      namespace: string;
      pod: string;
      saved: SavedWorkspace;
      /** The snapshot's object (its `saved.seq`, or `key`: a fork's copy), not the session's one workspace object. */
      snapshot?: { key: number };
    }): Promise<{ bytes: number; seq: number } | WorkspaceFailure> {
      const body = await store().get(input.sessionId, input.snapshot?.key);
      if (!body) return { error: `the store has no workspace for the session (${store().where})` };
      // The object is replaced whole by every save: one that is not the recorded save is never restored.
      if (sha256(body) !== input.saved.sha256)
        return { error: `the stored workspace is not the one saved after run ${input.saved.seq}` };
      const out = await inPod({
        namespace: input.namespace,
        pod: input.pod,
        command: helper('restore'),
        stdin: body,
        maxStdoutBytes: 64 * 1024,
        what: `restore the workspace of session ${input.sessionId}`,
      });
      if (!out) return { error: `its pod ${input.pod} was gone before the workspace was restored` };
      if (out.exitCode !== 0)
        return {
          error: `restoring the workspace failed (exit ${out.exitCode ?? 'none'}): ${out.stderr.trim()}`.trim(),
        };
      return { bytes: body.length, seq: input.saved.seq };
    },

    /** Deletes the session's workspace (it has ended): its one object, or all its snapshots. */
    async dropWorkspace(input: { sessionId: string; snapshots?: boolean }): Promise<void> {
      if (input.snapshots) await store().deleteAll(input.sessionId);
      else await store().delete(input.sessionId);
    },

    /**
     * The checkpoint of the interpreter's state the launcher wrote after a run (its `k` line, after the run's
     * trailer), read from the end of the pod's log as soon as it is there; an error when the pod is gone or it does
     * not come within `timeoutMs`.
     */
    async awaitCheckpoint(input: {
      namespace: string;
      pod: string;
      launcherSeq: number;
      timeoutMs: number;
    }): Promise<LauncherCheckpoint | WorkspaceFailure> {
      const until = Date.now() + input.timeoutMs;
      for (let wait = 10; ; wait = Math.min(500, wait * 2)) {
        const text = await kubeCallOrMissing(`read the log of ${input.pod}`, () =>
          deps.kube.core.readNamespacedPodLog({
            name: input.pod,
            namespace: input.namespace,
            container: CONTAINER_NAME,
            tailLines: 40,
          }),
        );
        if (text === undefined) return { error: `its pod ${input.pod} was gone before the state was checkpointed` };
        const k = checkpointOf(text, input.launcherSeq);
        if (k) return k;
        // A pod on its way out writes no more.
        const pod = await kubeCallOrMissing(`read pod ${input.pod}`, () =>
          deps.kube.core.readNamespacedPod({ name: input.pod, namespace: input.namespace }),
        );
        if (!pod || pod.metadata?.deletionTimestamp || ['Failed', 'Succeeded'].includes(pod.status?.phase ?? ''))
          return { error: `its pod ${input.pod} ended before the state was checkpointed` };
        if (Date.now() > until)
          return { error: `the interpreter's state was not checkpointed within ${input.timeoutMs / 1000} s` };
        await new Promise((r) => setTimeout(r, wait));
      }
    },

    /**
     * Saves a snapshot of the session after run `seq`: its workspace and, inside it, the interpreter's checkpoint
     * (launcher/workspace.py keeps .durable-sandbox-state/), as the session's object for that run; then deletes the
     * snapshots it no longer keeps (`drop`).
     */
    async saveSnapshot(input: {
      sessionId: string;
      namespace: string;
      pod: string;
      seq: number;
      sig: string;
      replayed: number;
      state?: LauncherCheckpoint;
      maxBytes: number;
      drop: number[];
    }): Promise<Snapshot | WorkspaceFailure> {
      const workspaces = store();
      const out = await tarOf(input, 'the snapshot');
      if ('error' in out) return out;
      const snapshot: Snapshot = {
        seq: input.seq,
        sig: input.sig,
        bytes: out.stdout.length,
        sha256: sha256(out.stdout),
        replayed: input.replayed,
        ...(input.state?.sha
          ? {
              state: { sha: input.state.sha, bytes: input.state.bytes ?? 0, skipped: input.state.skipped ?? [] },
            }
          : {}),
      };
      await workspaces.put(input.sessionId, out.stdout, { seq: String(input.seq), sha256: snapshot.sha256 }, input.seq);
      for (const seq of input.drop) await workspaces.delete(input.sessionId, seq);
      return snapshot;
    },

    /** One session's snapshot as another's first (a fork): the object copied in the store, never through here. */
    async copySnapshot(input: {
      from: { sessionId: string; seq: number };
      to: { sessionId: string; seq: number };
    }): Promise<void> {
      await store().copy(input.from, input.to);
    },
  };
}

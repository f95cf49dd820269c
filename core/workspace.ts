/**
 * A session's workspace kept outside its pod, in pure terms. The workspace is the session's HOME (the directory its
 * runs start in); after a run that changed it (the launcher's digest says so), the worker saves it as a tar.gz to an
 * S3-compatible object store (the local stack's SeaweedFS; on GKE, Cloud Storage through its XML API), one object per
 * session, and a new pod gets it back (launcher/workspace.py, through pods/exec: the sandbox has no network). Bytes
 * never pass through Temporal: the workflow keeps only what identifies the object's content.
 */
import { hash16 } from './names';
import { SCRATCH_DIR } from './manifests';

/** The session's workspace in its pod: its HOME and working directory. */
export const WORKSPACE_ROOT = SCRATCH_DIR;

/** The largest workspace (its tar.gz) a session keeps, unless the worker says otherwise (DS_WORKSPACE_MAX_BYTES). */
export const WORKSPACE_DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
/** No configuration may raise it past this: a worker holds one archive in memory while it saves or restores it. */
export const WORKSPACE_HARD_MAX_BYTES = 1024 * 1024 * 1024;

/** Where workspaces go: a bucket and a key prefix (`s3://bucket/prefix`), and how to reach the store. */
export interface WorkspaceStoreConfig {
  bucket: string;
  /** '' or ending in '/'. */
  prefix: string;
  /** An S3-compatible endpoint (the local stack's, or https://storage.googleapis.com); unset: AWS S3 itself. */
  endpoint?: string;
  region: string;
  /** Static credentials; unset: the SDK's default chain (environment, web identity, instance metadata). */
  accessKeyId?: string;
  secretAccessKey?: string;
}

/** Parses `s3://bucket[/prefix]`; the error names what is wrong with it. */
export function parseStoreUrl(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new Error(`"${url}" is not s3://bucket[/prefix] (a bucket name is 3-63 of a-z, 0-9, '.', '-')`);
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  return { bucket: m[1], prefix: prefix ? `${prefix}/` : '' };
}

/** Where a session's objects are. The session id is hashed: any id makes a valid key, and ids do not show. */
export function sessionPrefix(prefix: string, sessionId: string): string {
  return `${prefix}sessions/${hash16(sessionId)}/`;
}

/**
 * The object of a session's workspace: its one object (sessions before snapshots), or its snapshot after run `seq`
 * (the workspace and the interpreter's checkpoint, one object each; the last few kept).
 */
export function workspaceKey(prefix: string, sessionId: string, seq?: number): string {
  return `${sessionPrefix(prefix, sessionId)}${seq === undefined ? 'workspace.tar.gz' : `snapshot-${seq}.tar.gz`}`;
}

/**
 * A snapshot of a session after one of its runs: the saved workspace (its checkpoint of the interpreter's state
 * inside, when it has one), and how many of the session's replay entries it already holds.
 */
export interface Snapshot extends SavedWorkspace {
  /** The interpreter's checkpoint in it: its digest, and the names it could not hold. */
  state?: { sha: string; bytes: number; skipped: string[] };
  /** The replay entries (successful runs) up to it: a restore replays only those after. */
  replayed: number;
}

/** How many snapshots a session keeps, unless the worker says otherwise (DS_SESSION_SNAPSHOTS_KEPT). */
export const SNAPSHOTS_KEPT_DEFAULT = 8;

/** The snapshot a session is as of run `atRun` (the last one saved at or before it), if one is kept. */
export function snapshotAt(snapshots: readonly Snapshot[], atRun: number): Snapshot | undefined {
  let found: Snapshot | undefined;
  for (const s of snapshots) if (s.seq <= atRun && (!found || s.seq > found.seq)) found = s;
  return found;
}

/** The snapshots past the newest `keep` (oldest first): what a save deletes once the new one is in. */
export function snapshotsToDrop(snapshots: readonly Snapshot[], keep: number): Snapshot[] {
  const sorted = [...snapshots].sort((a, b) => a.seq - b.seq);
  return sorted.slice(0, Math.max(0, sorted.length - Math.max(1, keep)));
}

/** A saved workspace: which run it follows, the launcher's digest of it, and its archive's size and SHA-256. */
export interface SavedWorkspace {
  /** The session's run (its seq) after which it was saved. */
  seq: number;
  sig: string;
  bytes: number;
  sha256: string;
}

/** A save or restore that could not be done (the session goes on: its runs are still replayed). */
export interface WorkspaceFailure {
  error: string;
}

export type WorkspaceSaveResult = SavedWorkspace | WorkspaceFailure;

export function failedWorkspace(r: WorkspaceSaveResult | { bytes: number } | WorkspaceFailure): r is WorkspaceFailure {
  return typeof (r as WorkspaceFailure).error === 'string';
}

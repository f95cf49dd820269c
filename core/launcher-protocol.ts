/**
 * The launcher's protocol, TypeScript side: what the worker and launcher/launcher.py say to each other through a
 * pod (docs/LAUNCHER.md describes it whole). launcher.py holds the same constants under the same names;
 * test/unit/launcher-protocol.test.ts reads them from its source and runs it, so the two sides cannot drift apart.
 */
import type { SessionKernel } from './languages';

/** The launcher's first log line: which protocol the rest of the log speaks. */
export const LAUNCHER_FORMAT = 'durable-sandbox-launcher 1';

/** A warm sandbox's task header: `<TASK_FORMAT> <length> <sha256 hex>\n`, then <length> bytes of JSON (a LauncherTask). */
export const TASK_FORMAT = 'durable-sandbox-task 1';

/** Each log line after the first starts with one of these tags and a space. */
export const TAG = {
  /** A piece of the program's stdout, base64. */
  stdout: 'o',
  /** A piece of the program's stderr, base64. */
  stderr: 'e',
  /** Warm: the task the sandbox accepted, JSON `{executionId, attempt, sha256}` (LauncherAcceptance). */
  accepted: 'a',
  /** An output file follows, JSON `{name, size, kept}`: its `kept` bytes come in the `fileData` lines after it. */
  fileHeader: 'f',
  /** A piece of the last announced output file, base64. */
  fileData: 'b',
  /** The last line: how the program ended, JSON (LauncherTrailer). */
  trailer: 'x',
  /** Session: the interpreter a run ran in, just before its trailer, JSON (LauncherSessionNote). */
  session: 's',
  /**
   * Display data follows, JSON `{index, size}`: its `size` bytes (a MIME bundle as JSON) come in the `fileData` lines
   * after it.
   */
  display: 'd',
  /** Session: after a run's trailer, how the checkpoint of its interpreter's state went, JSON (LauncherCheckpoint). */
  checkpoint: 'k',
} as const;

export type Tag = (typeof TAG)[keyof typeof TAG];

/** The trailer: how the program ended, by the launcher's own account. */
export interface LauncherTrailer {
  /** The program's exit code; 128 + n when a signal n ended it; 125/126 when nothing ran (see LAUNCHER_EXIT). */
  exitCode: number;
  /** The signal that ended the program, or null. */
  signal: number | null;
  /** The launcher stopped the program at its time limit. */
  timedOut: boolean;
  /** The sandbox was being stopped (SIGTERM to the launcher) when the program ended. */
  terminated: boolean;
  /** Bytes the program wrote to each stream (all of them, not only the kept ones). */
  stdoutBytes: number;
  stderrBytes: number;
  /** The program's start and end, ms since the epoch by the sandbox's clock (0 when nothing ran). */
  startedAt: number;
  finishedAt: number;
  /** Why nothing ran, or what went wrong around the program; null when all went as it should. */
  error: string | null;
  /**
   * Output files sent, and files under the out directory that were not (not regular, unreadable, over the count).
   * Informational: the worker counts the files it reads itself (core/output.ts keeps neither field).
   */
  files?: number;
  filesSkipped?: number;
  /** Displays sent, and displays dropped (past the count or byte cap, or not a MIME bundle). */
  displays?: number;
  displaysDropped?: number;
}

/** Every field of the trailer, in the order the launcher writes them. */
export const TRAILER_FIELDS = [
  'exitCode',
  'signal',
  'timedOut',
  'terminated',
  'stdoutBytes',
  'stderrBytes',
  'startedAt',
  'finishedAt',
  'error',
  'files',
  'filesSkipped',
  'displays',
  'displaysDropped',
] as const satisfies readonly (keyof LauncherTrailer)[];

/** A warm sandbox's launcher says which task it accepted (its one and only); a session's, which run it starts. */
export interface LauncherAcceptance {
  executionId: string;
  attempt: number;
  sha256: string;
  /** Session: the run's number in the session. */
  seq?: number;
}

/** Session: what a run ran in. */
export interface LauncherSessionNote {
  seq: number;
  /** The session's interpreter: started for this run (the first), kept from the run before, or restarted. */
  interpreter: 'started' | 'kept' | 'restarted';
  /** Why it was restarted (the run before timed out and did not come back, or it exited); null otherwise. */
  why: string | null;
  /** Whether the next run finds this interpreter (`keep`) or a new one (`restart`). */
  next: 'keep' | 'restart';
  /**
   * What the session's workspace (its HOME) holds after the run: a digest of its names, kinds, sizes and times (null
   * past the launcher's entry limit), its entries and bytes. A run that changed it has a new `sig`. `base`: the digest
   * of the workspace as the sandbox started (nothing of the session's own in it).
   */
  workspace?: { sig: string | null; entries: number; bytes: number; base?: string | null };
  /** Output the interpreter wrote between the run before and this one (a thread still printing): its bytes, and the
   * first of it. */
  leftover?: { bytes: number; text: string };
  /** The state restored into the interpreter (a restore task, or a restart in the pod), or why it was not. */
  state?: StateReport;
  /** A replay task: how many runs ran again, how many of them failed. */
  replayed?: { runs: number; of: number; failed: number; error?: string };
}

/**
 * How a checkpoint or a restore of a session's interpreter went (the kernel's answer): its size and digest, how many
 * names it holds, the names it could not hold (a socket, a thread, a generator) and why, what serialized it, its
 * time; or an error (then nothing was written or loaded).
 */
export interface StateReport {
  sha?: string;
  bytes?: number;
  names?: number;
  skipped?: string[];
  with?: string;
  /** A checkpoint: whether it differs from the one before (an unchanged one is not written again). */
  changed?: boolean;
  restored?: boolean;
  ms?: number;
  error?: string;
}

/** The launcher's `k` line after a session run whose task asked for it: the checkpoint of the state it left. */
export type LauncherCheckpoint = StateReport & { seq: number };

/** The container's exit codes when the launcher runs no program (otherwise: the program's). */
export const LAUNCHER_EXIT = {
  /** Warm: the task arrived cut short, damaged, too large, or not at all. */
  deliveryFailed: 125,
  /** The seccomp filter could not be installed: nothing runs. */
  refused: 126,
  /** Warm: no task came within --max-idle-seconds (an unclaimed pool pod ending itself); session: no run came
   * within it, or stdin closed. */
  idle: 0,
} as const;

/**
 * What the launcher runs, one JSON document for every sandbox (docs/LAUNCHER.md): handed whole to a waiting launcher
 * (its program and files included), or mounted with the pod as `task.json` beside the program and files, which it
 * then leaves out. Built by launcherTask() in manifests.ts.
 */
export interface LauncherTask {
  executionId: string;
  attempt: number;
  /**
   * Session runs only: the run's number in the session (the launcher answers with it). A launcher waiting in warm mode
   * that receives a task with a seq becomes that session's launcher (a session claimed its pool pod).
   */
  seq?: number;
  /** Session runs only: how long the launcher waits for the next run before it ends itself (the session's idle). */
  idleSeconds?: number;
  /** Session runs only: the interpreter kept for the session (its language's `sessionKernel`; python if absent). */
  kernel?: SessionKernel;
  /**
   * Session tasks only: a run (the default); `restore`, the interpreter's state from the checkpoint in the workspace;
   * `replay`, the session's earlier runs (`codes`) again, in order, their output this task's.
   */
  op?: 'run' | 'restore' | 'replay';
  codes?: string[];
  /** Session runs only: checkpoint the interpreter's state after the run (a `k` line), up to maxBytes. */
  checkpoint?: { maxBytes: number };
  /** The program's file name (under the sandbox directory). */
  file: string;
  /** What runs the program. */
  command: string[];
  /** Handed tasks only: the program and its input files. */
  code?: string;
  files?: { name: string; content: string; encoding?: 'utf8' | 'base64' }[];
  /** The program's own variables, on top of the language's environment. */
  env: Record<string, string>;
  /**
   * With network egress: the gateway (host:port) the launcher waits to reach before it starts the program, so that
   * the program's first connection finds the host's firewall already open for its pod.
   */
  egress?: { proxy: string };
  timeoutSeconds: number;
  stdoutCap: number;
  stderrCap: number;
  outDir: string;
  filesMaxCount: number;
  fileCap: number;
  filesCap: number;
  /** Display data (a notebook's rich output) that comes back: how many displays, in how many bytes in all. */
  displaysMaxCount?: number;
  displaysCap?: number;
}

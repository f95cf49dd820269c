/**
 * The public shapes of an execution: what a caller sends, what it gets back. Shared by the client, the workflow
 * and the activities; types and constants only.
 */
import type { NetworkOptions, NetworkReport } from './egress';
import type { FailureReason } from './failures';
import type { Language } from './languages';
import type { SandboxKind } from './sandbox';

export type { FailureReason } from './failures';

/** Languages the sandbox runs: one entry each in the language list (core/languages.ts). */
export type { Language } from './languages';

export interface InputFile {
  /** File name, shown to the program as /sandbox/files/<name>. Letters, digits, '.', '_' and '-' only. */
  name: string;
  /** The file's content: text, or base64 when `encoding` is 'base64'. */
  content: string;
  encoding?: 'utf8' | 'base64';
}

export interface ResourceLimits {
  /** Kubernetes CPU quantity, e.g. "500m" or "1". */
  cpu?: string;
  /** Kubernetes memory quantity, e.g. "512Mi". */
  memory?: string;
}

export interface ExecutionInput {
  /** The program's source. */
  code: string;
  /** Defaults to DEFAULT_LANGUAGE (python). */
  language?: Language;
  /** Wall-clock limit for the program itself, in seconds. Defaults to the worker's configured default. */
  timeoutSeconds?: number;
  /** Small read-only input files mounted beside the code. */
  files?: InputFile[];
  /** Resource limits of the sandbox container. Defaults to the worker's configured defaults. */
  limits?: ResourceLimits;
  /** Extra environment variables for the program. */
  env?: Record<string, string>;
  /**
   * Network egress through the worker's egress gateway: the domains the program may reach (within the worker's
   * ceiling, DS_EGRESS_ALLOW). Without it the sandbox reaches nothing.
   */
  network?: NetworkOptions;
}

/**
 * How an execution (or a session's run) ended. `sandbox_lost` is a session run whose pod was lost while the run was in
 * it: the run is never re-run (it may have had effects), `error.reason` is `SandboxLost`, and the session's next run
 * gets a new pod with its state rebuilt.
 */
export type ExecutionStatus =
  'succeeded' | 'failed' | 'timed_out' | 'oom_killed' | 'cancelled' | 'infra_error' | 'sandbox_lost';

/** The phases of one attempt, in the order they happen. */
export const PHASES = [
  'started',
  'jobCreated',
  'podScheduled',
  'containerStarted',
  'containerFinished',
  'outputCollected',
  'cleanedUp',
] as const;

/**
 * A phase of the timeline: those of PHASES, and `claimed` (a warm attempt's pool pod was claimed: it takes the place
 * of jobCreated and podScheduled).
 */
export type PhaseName = (typeof PHASES)[number] | 'claimed';

/** One entry of the phase timeline: when the execution reached a phase (ms since the epoch), in which attempt. */
export interface PhaseEvent {
  phase: PhaseName;
  at: number;
  attempt: number;
}

export interface StreamOutput {
  /** The captured text (invalid UTF-8 replaced by U+FFFD), at most the configured cap. */
  text: string;
  /** Bytes the program wrote to the stream in all. */
  totalBytes: number;
  /** Bytes captured (<= the cap). */
  capturedBytes: number;
  /** True when the program wrote more than was captured, or the capture was cut short. */
  truncated: boolean;
}

/** The newest text of one stream while the program runs. */
export interface OutputTail {
  /** The newest captured text (at most a few KiB). */
  text: string;
  /** Where `text` ends in the stream's captured text, in UTF-16 code units: it starts at `end - text.length`. */
  end: number;
}

/** Output so far of a running program, per stream. */
export interface LiveOutput {
  stdout: OutputTail;
  stderr: OutputTail;
  /** Display data so far: how many came whole, and the newest of them (a reader that fell behind gets the rest at the end). */
  displays?: { count: number; recent: { index: number; bundle: MimeBundle }[] };
}

/** A file the program wrote under /sandbox/out, returned with the result. */
export interface OutputFile {
  /** Its path under /sandbox/out ('plot.png', 'charts/a.svg'). */
  name: string;
  /** Its size in the sandbox (bytes), also when truncated. */
  sizeBytes: number;
  /** From its extension ('image/png', 'text/csv', …; 'application/octet-stream' when unknown). */
  mimeType: string;
  /** 'utf8' for text that is valid UTF-8, else 'base64'. */
  encoding: 'utf8' | 'base64';
  content: string;
  /** True when not all of it is in `content` (a per-file or total cap). */
  truncated: boolean;
}

/**
 * One display: what a notebook shows for an object (a figure, a table, a rich value), as a MIME bundle keyed by type:
 * `text/plain` always; `image/png`, `image/jpeg` as base64; `text/html`, `text/markdown`, `image/svg+xml`,
 * `text/latex` as text; `application/json` as JSON text; `durable-sandbox/truncated` when the bundle was too large
 * whole and only its text form came back.
 */
export type MimeBundle = Record<string, string>;

/** How many displays the program made, and how many of them did not come back (past the count or byte cap). */
export interface DisplaysInfo {
  total: number;
  dropped: number;
}

export interface KubernetesRefs {
  namespace: string;
  /** The attempt's Job and ConfigMap (cold); a warm attempt has neither, only its pod. */
  job?: string;
  configMap?: string;
  pod?: string;
  node?: string;
  image: string;
}

export interface InfraError {
  /** A stable, machine-readable reason, e.g. ImagePullFailed, Unschedulable, PodLost (core/failures.ts). */
  reason: FailureReason;
  message: string;
  /** Whether this kind of failure is retried with fresh resources. */
  retryable: boolean;
}

export interface ExecutionResult {
  executionId: string;
  status: ExecutionStatus;
  /** The program's exit code; null when it never exited by itself (timed out, cancelled, infrastructure error). */
  exitCode: number | null;
  stdout: string;
  stderr: string;
  stdoutInfo: Omit<StreamOutput, 'text'>;
  stderrInfo: Omit<StreamOutput, 'text'>;
  /** Files the program wrote under /sandbox/out (regular files only), capped in count and size. */
  outputFiles: OutputFile[];
  /** Set when status is 'infra_error' (and for earlier attempts' failures, in `attemptErrors`). */
  error?: InfraError;
  /** Infrastructure attempts made (1 unless an infrastructure failure forced a retry with fresh resources). */
  attempts: number;
  attemptErrors: InfraError[];
  language: Language;
  /** Where the program ran: a pre-started pod of the warm pool, or a Job made for it. */
  sandbox: SandboxKind;
  kubernetes: KubernetesRefs;
  timeline: PhaseEvent[];
  /** The program's own run time in ms, as measured inside the sandbox, when known. */
  durationMs?: number;
  /** With an allow-list: what the program reached and was refused through the egress gateway. */
  network?: NetworkReport;
  /**
   * Display data, in the order shown: `display(obj)`, `plt.show()` and the figures a run leaves open, a session's
   * trailing expression that shows as more than its repr (a DataFrame, HTML); capped (`displaysInfo` says how many
   * did not come back). Absent when the program displayed nothing.
   */
  displays?: MimeBundle[];
  displaysInfo?: DisplaysInfo;
}

/**
 * The execution policy: defaults and ceilings that apply to every execution. The worker builds it from its
 * configuration; the workflow fetches it once (recorded in history) so validation and the Job spec agree.
 */
import type { EgressPolicy } from './egress';
import { LANGUAGE_NAMES, LANGUAGES, type Language } from './languages';

/** The task queue workers poll and clients start executions on, unless configured otherwise. */
export const DEFAULT_TASK_QUEUE = 'durable-sandbox';

/** What of a program's output is kept: the streams' caps and the output files' limits. */
export interface Caps {
  stdoutCapBytes: number;
  stderrCapBytes: number;
  /** Output files: how many, bytes of each, bytes in all (0 or absent: none). */
  outputFilesMaxCount?: number;
  outputFileCapBytes?: number;
  outputFilesCapBytes?: number;
  /** Display data: how many displays, bytes of them in all (their MIME bundles as JSON; 0 or absent: none). */
  displaysMaxCount?: number;
  displaysCapBytes?: number;
}

export interface ExecutionPolicy {
  /** Namespace the sandbox Jobs run in. */
  namespace: string;
  defaultTimeoutSeconds: number;
  maxTimeoutSeconds: number;
  /** Container limits when the caller sets none. */
  defaultCpu: string;
  defaultMemory: string;
  /** Container requests (what the scheduler reserves); capped at the limits. */
  requestCpu: string;
  requestMemory: string;
  maxCpu: string;
  maxMemory: string;
  /** Size of the writable scratch directory (/tmp) and the container's ephemeral-storage limit. */
  scratchSize: string;
  /** Captured bytes per stream; the rest is counted, not kept. */
  stdoutCapBytes: number;
  stderrCapBytes: number;
  /** Files the program writes under /sandbox/out that come back with the result: how many, bytes of each, in all. */
  outputFilesMaxCount: number;
  outputFileCapBytes: number;
  outputFilesCapBytes: number;
  /**
   * Display data that comes back with the result (figures, tables, rich values): how many, and bytes of them in all
   * (their MIME bundles as JSON). Absent in histories recorded before display data: none.
   */
  displaysMaxCount?: number;
  displaysCapBytes?: number;
  /** Attempts with fresh resources when the infrastructure fails (1 = no retry). */
  maxInfraAttempts: number;
  /** How long a pod may stay unschedulable before the attempt fails as an infrastructure error. */
  unschedulableGraceSeconds: number;
  /**
   * An execution that no worker has started within this long ends as infra_error `QueueTimeout` and runs nothing
   * (0: it waits for a worker forever).
   */
  queueTimeoutSeconds: number;
  /** Sessions open at once on the worker's task queue; one more is refused (`SessionLimit`), not queued. */
  maxOpenSessions: number;
  /**
   * The largest session workspace (its tar.gz) the worker keeps in its store; 0 (or absent, in histories recorded
   * before) when it has no store: a new pod gets a session's files back by replay alone.
   */
  workspaceMaxBytes?: number;
  /** Snapshots a session keeps (the newest; a fork starts from one of them); absent in histories recorded before: 8. */
  snapshotsKept?: number;
  /** Time the Job's server-side deadline allows, on top of the program's timeout, for scheduling and startup. */
  startupAllowanceSeconds: number;
  /** The image each language runs in. */
  images: Record<Language, string>;
  /** RuntimeClass of sandbox pods ('' for none: only for clusters without gVisor, never in production). */
  runtimeClassName: string;
  /** Whether the workflow sets the Sandbox* search attributes (they must be registered in the namespace). */
  searchAttributes: boolean;
  /**
   * Network egress: the ceiling every caller's allow-list must stay within, and each sandbox's caps. Absent in a
   * client that does not know the worker's (it checks an allow-list's form only; the workflow checks the ceiling)
   * and in histories recorded before egress.
   */
  egress?: EgressPolicy;
}

/** Hard ceilings that no configuration can raise: they keep every payload far below Temporal's 2 MB limit. */
export const HARD_LIMITS = {
  maxCodeBytes: 256 * 1024,
  maxFiles: 20,
  maxFileBytesTotal: 512 * 1024,
  maxFileNameLength: 100,
  maxEnvVars: 50,
  maxEnvBytesTotal: 32 * 1024,
  maxInputJsonBytes: 1536 * 1024,
  /** stdout + stderr caps together: even escaped 6x in JSON, a result stays under 2 MB. */
  maxOutputCapBytesTotal: 256 * 1024,
  /**
   * The whole result's worst case: stdout and stderr escaped 6x in JSON plus the output files in base64 (4/3) must
   * stay this far under Temporal's 2 MB payload limit.
   */
  maxResultBytes: 1800 * 1024,
  maxOutputFiles: 100,
  maxDisplays: 100,
  maxTimeoutSeconds: 24 * 3600,
  minCpuMillis: 10,
  minMemoryBytes: 16 * 1024 * 1024,
} as const;

export const DEFAULT_POLICY: ExecutionPolicy = {
  namespace: 'durable-sandbox',
  defaultTimeoutSeconds: 60,
  maxTimeoutSeconds: 3600,
  defaultCpu: '500m',
  defaultMemory: '512Mi',
  requestCpu: '100m',
  requestMemory: '128Mi',
  maxCpu: '2',
  maxMemory: '4Gi',
  scratchSize: '256Mi',
  stdoutCapBytes: 64 * 1024,
  stderrCapBytes: 64 * 1024,
  outputFilesMaxCount: 20,
  outputFileCapBytes: 320 * 1024,
  outputFilesCapBytes: 320 * 1024,
  displaysMaxCount: 20,
  displaysCapBytes: 256 * 1024,
  maxInfraAttempts: 3,
  unschedulableGraceSeconds: 30,
  startupAllowanceSeconds: 120,
  queueTimeoutSeconds: 300,
  maxOpenSessions: 20,
  workspaceMaxBytes: 0,
  snapshotsKept: 8,
  images: Object.fromEntries(LANGUAGE_NAMES.map((l) => [l, LANGUAGES[l].image])) as Record<Language, string>,
  runtimeClassName: 'gvisor',
  searchAttributes: true,
};

/** The worst-case size of a result (bytes) with these caps: streams escaped 6x in JSON, files in base64, and room. */
export function worstResultBytes(
  p: Pick<
    ExecutionPolicy,
    'stdoutCapBytes' | 'stderrCapBytes' | 'outputFilesCapBytes' | 'outputFilesMaxCount' | 'displaysCapBytes'
  >,
): number {
  // Display data is JSON whose text the launcher passes as it is: escaped at most 2x again in the result's JSON
  // (quotes, backslashes and newlines; other control characters are not kept in display text).
  return (
    6 * (p.stdoutCapBytes + p.stderrCapBytes) +
    Math.ceil((p.outputFilesCapBytes * 4) / 3) +
    2 * (p.displaysCapBytes ?? 0) +
    p.outputFilesMaxCount * 512 +
    16 * 1024
  );
}

/** The output caps a policy sets (streams and files). */
export function capsOf(policy: ExecutionPolicy): Caps {
  const { stdoutCapBytes, stderrCapBytes, outputFilesMaxCount, outputFileCapBytes, outputFilesCapBytes } = policy;
  const displays =
    policy.displaysMaxCount !== undefined && policy.displaysCapBytes !== undefined
      ? { displaysMaxCount: policy.displaysMaxCount, displaysCapBytes: policy.displaysCapBytes }
      : {};
  return { stdoutCapBytes, stderrCapBytes, outputFilesMaxCount, outputFileCapBytes, outputFilesCapBytes, ...displays };
}

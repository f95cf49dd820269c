/** The worker's configuration, read from the environment with every value checked. */
import {
  DEFAULT_POLICY,
  DEFAULT_TASK_QUEUE,
  HARD_LIMITS,
  worstResultBytes,
  type ExecutionPolicy,
} from '../core/policy';
import { temporalSettingsFromEnv, type TemporalSettings } from '../client/connection';
import {
  imageVariable,
  LANGUAGE_NAMES,
  poolSizeVariable,
  SANDBOX_LANGUAGES,
  sandboxLanguage,
  type Language,
} from '../core/languages';
import type { PoolConfig } from '../core/pool';
import { EGRESS_DEFAULTS, parseEgressCeiling, type EgressRule } from '../core/egress';
import { bytes, cpuMillis } from '../core/quantity';
import {
  parseStoreUrl,
  WORKSPACE_DEFAULT_MAX_BYTES,
  WORKSPACE_HARD_MAX_BYTES,
  type WorkspaceStoreConfig,
} from '../core/workspace';

export interface WorkerConfig {
  temporal: TemporalSettings & { taskQueue: string };
  /** kubeconfig path; unset means in-cluster credentials (or ~/.kube/config outside a cluster). */
  kubeconfig?: string;
  policy: ExecutionPolicy;
  maxConcurrentActivities: number;
  /**
   * The warm pools: pods kept ready per language (`size` for each, unless `sizes` says otherwise; 0: off) and how
   * long one may idle before it is replaced.
   */
  pool: PoolConfig & { sizes: Partial<Record<Language, number>> };
  /** The reconciler's Temporal Schedule; intervalSeconds 0 turns it off. */
  reconcile: { scheduleId: string; intervalSeconds: number; minAgeSeconds: number; maxAgeSeconds: number };
  logLevel: 'TRACE' | 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** host:port the worker serves Prometheus metrics on (`/metrics`); unset: no metrics endpoint. */
  metricsAddress?: string;
  /** host:port for `/healthz` (alive) and `/readyz` (polling for tasks); unset: not served. */
  healthAddress?: string;
  /** On SIGTERM, how long running activities get to finish before they are cancelled (and retried elsewhere). */
  shutdownGraceSeconds: number;
  /** How the worker names itself to Temporal (shown in histories and the UI); unset: Temporal's `pid@host`. */
  identity?: string;
  /** Where sessions keep their workspaces (DS_WORKSPACE_STORE); unset: nowhere (files come back by replay alone). */
  workspaceStore?: WorkspaceStoreConfig;
  /**
   * The egress gateway (DS_EGRESS_GATEWAY, DS_EGRESS_REPORT, DS_EGRESS_KEY_FILE or DS_EGRESS_KEY); unset: sandboxes
   * have no egress, and the ceiling (DS_EGRESS_ALLOW) must be empty.
   */
  egress?: { gateway: string; report: string; keyFile?: string; key?: string };
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function int(env: Env, key: string, fallback: number, min: number, max: number): number {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`${key}=${raw}: must be a whole number from ${min} to ${max}`);
  }
  return n;
}

function quantity(env: Env, key: string, fallback: string, parse: (q: string) => number | null): string {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  if (parse(raw) === null) throw new ConfigError(`${key}=${raw}: not a Kubernetes quantity`);
  return raw;
}

function flag(env: Env, key: string, fallback: boolean): boolean {
  const raw = env[key];
  if (raw === undefined || raw === '') return fallback;
  if (['1', 'true', 'on', 'yes'].includes(raw)) return true;
  if (['0', 'false', 'off', 'no'].includes(raw)) return false;
  throw new ConfigError(`${key}=${raw}: must be on or off`);
}

function hostPort(env: Env, key: string, example: string): string | undefined {
  const raw = env[key] || undefined;
  if (raw && !/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(raw)) {
    throw new ConfigError(`${key}=${raw}: host:port, e.g. ${example}`);
  }
  return raw;
}

export function loadConfig(env: Env = process.env): WorkerConfig {
  const d = DEFAULT_POLICY;
  const image = env.DS_IMAGE;
  const policy: ExecutionPolicy = {
    namespace: env.DS_SANDBOX_NAMESPACE || d.namespace,
    defaultTimeoutSeconds: int(
      env,
      'DS_DEFAULT_TIMEOUT_SECONDS',
      d.defaultTimeoutSeconds,
      1,
      HARD_LIMITS.maxTimeoutSeconds,
    ),
    maxTimeoutSeconds: int(env, 'DS_MAX_TIMEOUT_SECONDS', d.maxTimeoutSeconds, 1, HARD_LIMITS.maxTimeoutSeconds),
    defaultCpu: quantity(env, 'DS_DEFAULT_CPU', d.defaultCpu, cpuMillis),
    defaultMemory: quantity(env, 'DS_DEFAULT_MEMORY', d.defaultMemory, bytes),
    requestCpu: quantity(env, 'DS_REQUEST_CPU', d.requestCpu, cpuMillis),
    requestMemory: quantity(env, 'DS_REQUEST_MEMORY', d.requestMemory, bytes),
    maxCpu: quantity(env, 'DS_MAX_CPU', d.maxCpu, cpuMillis),
    maxMemory: quantity(env, 'DS_MAX_MEMORY', d.maxMemory, bytes),
    scratchSize: quantity(env, 'DS_SCRATCH_SIZE', d.scratchSize, bytes),
    stdoutCapBytes: int(env, 'DS_STDOUT_CAP_BYTES', d.stdoutCapBytes, 0, HARD_LIMITS.maxOutputCapBytesTotal),
    stderrCapBytes: int(env, 'DS_STDERR_CAP_BYTES', d.stderrCapBytes, 0, HARD_LIMITS.maxOutputCapBytesTotal),
    outputFilesMaxCount: int(env, 'DS_OUTPUT_FILES_MAX_COUNT', d.outputFilesMaxCount, 0, HARD_LIMITS.maxOutputFiles),
    outputFileCapBytes: int(env, 'DS_OUTPUT_FILE_CAP_BYTES', d.outputFileCapBytes, 0, HARD_LIMITS.maxResultBytes),
    outputFilesCapBytes: int(env, 'DS_OUTPUT_FILES_CAP_BYTES', d.outputFilesCapBytes, 0, HARD_LIMITS.maxResultBytes),
    displaysMaxCount: int(env, 'DS_DISPLAYS_MAX_COUNT', d.displaysMaxCount ?? 0, 0, HARD_LIMITS.maxDisplays),
    displaysCapBytes: int(env, 'DS_DISPLAYS_CAP_BYTES', d.displaysCapBytes ?? 0, 0, HARD_LIMITS.maxResultBytes),
    maxInfraAttempts: int(env, 'DS_MAX_INFRA_ATTEMPTS', d.maxInfraAttempts, 1, 10),
    unschedulableGraceSeconds: int(env, 'DS_UNSCHEDULABLE_GRACE_SECONDS', d.unschedulableGraceSeconds, 1, 3600),
    startupAllowanceSeconds: int(env, 'DS_STARTUP_ALLOWANCE_SECONDS', d.startupAllowanceSeconds, 5, 3600),
    queueTimeoutSeconds: int(env, 'DS_QUEUE_TIMEOUT_SECONDS', d.queueTimeoutSeconds, 0, 7 * 24 * 3600),
    maxOpenSessions: int(env, 'DS_MAX_OPEN_SESSIONS', d.maxOpenSessions, 1, 10_000),
    workspaceMaxBytes: env.DS_WORKSPACE_STORE
      ? int(env, 'DS_WORKSPACE_MAX_BYTES', WORKSPACE_DEFAULT_MAX_BYTES, 1024, WORKSPACE_HARD_MAX_BYTES)
      : 0,
    snapshotsKept: int(env, 'DS_SESSION_SNAPSHOTS_KEPT', d.snapshotsKept ?? 8, 1, 1000),
    images: Object.fromEntries(
      LANGUAGE_NAMES.map((l) => [l, env[imageVariable(sandboxLanguage(l))] || image || d.images[l]]),
    ) as Record<Language, string>,
    runtimeClassName: env.DS_RUNTIME_CLASS ?? d.runtimeClassName,
    searchAttributes: flag(env, 'DS_SEARCH_ATTRIBUTES', d.searchAttributes),
    egress: {
      allow: egressCeiling(env),
      maxBytes: int(env, 'DS_EGRESS_MAX_BYTES', EGRESS_DEFAULTS.maxBytes, 1024, 64 * 1024 ** 3),
      maxConnections: int(env, 'DS_EGRESS_MAX_CONNECTIONS', EGRESS_DEFAULTS.maxConnections, 1, 10_000),
    },
  };
  const egress = egressGatewayOf(env);
  if (policy.egress!.allow.length > 0 && !egress)
    throw new ConfigError(
      'DS_EGRESS_ALLOW needs DS_EGRESS_GATEWAY (host:port of the egress gateway the sandboxes reach) and DS_EGRESS_REPORT',
    );
  if (policy.stdoutCapBytes + policy.stderrCapBytes > HARD_LIMITS.maxOutputCapBytesTotal) {
    throw new ConfigError(
      `DS_STDOUT_CAP_BYTES + DS_STDERR_CAP_BYTES = ${policy.stdoutCapBytes + policy.stderrCapBytes}: ` +
        `at most ${HARD_LIMITS.maxOutputCapBytesTotal} together (keeps results under Temporal's 2 MB payload limit)`,
    );
  }
  if (worstResultBytes(policy) > HARD_LIMITS.maxResultBytes) {
    throw new ConfigError(
      `DS_STDOUT_CAP_BYTES, DS_STDERR_CAP_BYTES, DS_OUTPUT_FILES_CAP_BYTES and DS_DISPLAYS_CAP_BYTES allow a result of up to ${worstResultBytes(policy)} bytes: ` +
        `at most ${HARD_LIMITS.maxResultBytes} (6 x the stream caps + 4/3 x the files cap + 2 x the displays cap; Temporal's payload limit is 2 MB)`,
    );
  }
  if (policy.defaultTimeoutSeconds > policy.maxTimeoutSeconds) {
    throw new ConfigError('DS_DEFAULT_TIMEOUT_SECONDS is above DS_MAX_TIMEOUT_SECONDS');
  }
  const metricsAddress = hostPort(env, 'DS_METRICS_ADDRESS', '0.0.0.0:9464');
  const healthAddress = hostPort(env, 'DS_HEALTH_ADDRESS', '0.0.0.0:8080');
  const logLevel = (env.DS_LOG_LEVEL ?? 'INFO').toUpperCase();
  if (!['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'].includes(logLevel)) {
    throw new ConfigError(`DS_LOG_LEVEL=${env.DS_LOG_LEVEL}: one of TRACE, DEBUG, INFO, WARN, ERROR`);
  }
  const taskQueue = env.DS_TASK_QUEUE || DEFAULT_TASK_QUEUE;
  const poolSize = int(env, 'DS_WARM_POOL_SIZE', 2, 0, 100);
  // Beyond this age an object is deleted whatever its execution's state: no execution can need it that long.
  const ceiling = policy.maxTimeoutSeconds + policy.startupAllowanceSeconds + 3600;
  return {
    temporal: { ...temporalSettingsFromEnv(env), taskQueue },
    kubeconfig: env.KUBECONFIG || undefined,
    policy,
    maxConcurrentActivities: int(env, 'DS_MAX_CONCURRENT_ACTIVITIES', 200, 1, 10_000),
    pool: {
      size: poolSize,
      sizes: Object.fromEntries(SANDBOX_LANGUAGES.map((l) => [l, int(env, poolSizeVariable(l), poolSize, 0, 100)])),
      maxIdleSeconds: int(env, 'DS_WARM_POOL_MAX_IDLE_SECONDS', 600, 10, 86_400),
    },
    reconcile: {
      scheduleId: env.DS_RECONCILE_SCHEDULE_ID || `durable-sandbox-reconciler-${taskQueue}`,
      intervalSeconds: int(env, 'DS_RECONCILE_INTERVAL_SECONDS', 300, 0, 86_400),
      minAgeSeconds: int(env, 'DS_RECONCILE_MIN_AGE_SECONDS', 60, 0, 86_400),
      maxAgeSeconds: int(env, 'DS_RECONCILE_MAX_AGE_SECONDS', ceiling, 60, 30 * 86_400),
    },
    logLevel: logLevel as WorkerConfig['logLevel'],
    ...(metricsAddress ? { metricsAddress } : {}),
    ...(healthAddress ? { healthAddress } : {}),
    shutdownGraceSeconds: int(env, 'DS_SHUTDOWN_GRACE_SECONDS', 10, 0, 3600),
    ...(env.DS_WORKER_IDENTITY ? { identity: env.DS_WORKER_IDENTITY } : {}),
    ...(env.DS_WORKSPACE_STORE ? { workspaceStore: workspaceStoreOf(env, env.DS_WORKSPACE_STORE) } : {}),
    ...(egress ? { egress } : {}),
  };
}

/** DS_EGRESS_ALLOW: the most any caller may be allowed (domains, `*.suffix`, optional ports); empty: no egress. */
function egressCeiling(env: Env): EgressRule[] {
  try {
    return parseEgressCeiling(env.DS_EGRESS_ALLOW);
  } catch (err) {
    throw new ConfigError(`DS_EGRESS_ALLOW: ${(err as Error).message}`);
  }
}

/** Where the egress gateway is: the address sandboxes reach, its report URL, and the key shared with it. */
function egressGatewayOf(env: Env): WorkerConfig['egress'] {
  const gateway = hostPort(env, 'DS_EGRESS_GATEWAY', '10.96.0.50:3128');
  if (!gateway) return undefined;
  const report = env.DS_EGRESS_REPORT || undefined;
  if (!report || !/^https?:\/\/[^/]+/.test(report))
    throw new ConfigError(`DS_EGRESS_REPORT=${report ?? ''}: the gateway's report URL, e.g. http://10.96.0.50:3129`);
  const keyFile = env.DS_EGRESS_KEY_FILE || undefined;
  const key = env.DS_EGRESS_KEY || undefined;
  if (!keyFile && !key)
    throw new ConfigError('DS_EGRESS_GATEWAY needs the key the gateway shares: DS_EGRESS_KEY_FILE or DS_EGRESS_KEY');
  return { gateway, report, ...(keyFile ? { keyFile } : {}), ...(key ? { key } : {}) };
}

/** DS_WORKSPACE_STORE=s3://bucket[/prefix] and how to reach it (DS_WORKSPACE_S3_*). */
function workspaceStoreOf(env: Env, url: string): WorkspaceStoreConfig {
  let where: { bucket: string; prefix: string };
  try {
    where = parseStoreUrl(url);
  } catch (err) {
    throw new ConfigError(`DS_WORKSPACE_STORE=${url}: ${(err as Error).message}`);
  }
  const endpoint = env.DS_WORKSPACE_S3_ENDPOINT || undefined;
  if (endpoint && !/^https?:\/\/[^/]+/.test(endpoint))
    throw new ConfigError(`DS_WORKSPACE_S3_ENDPOINT=${endpoint}: an http(s) URL, e.g. https://storage.googleapis.com`);
  const accessKeyId = env.DS_WORKSPACE_S3_ACCESS_KEY_ID || undefined;
  const secretAccessKey = env.DS_WORKSPACE_S3_SECRET_ACCESS_KEY || undefined;
  if (!accessKeyId !== !secretAccessKey)
    throw new ConfigError('DS_WORKSPACE_S3_ACCESS_KEY_ID and DS_WORKSPACE_S3_SECRET_ACCESS_KEY go together');
  return {
    ...where,
    ...(endpoint ? { endpoint } : {}),
    region: env.DS_WORKSPACE_S3_REGION || 'us-east-1',
    ...(accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : {}),
  };
}

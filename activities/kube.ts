/**
 * The Kubernetes clients the activities use, and how an API error becomes a typed activity failure: retried when
 * the cluster may heal by itself, not retried when only a person can fix it.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { ApiException, BatchV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { ApplicationFailure } from '@temporalio/common';
import type { FailureReason } from '../core/failures';
import { PodCaches } from './pod-cache';

export interface Kube {
  config: KubeConfig;
  core: CoreV1Api;
  batch: BatchV1Api;
  /** The worker's shared view of sandbox pods (absent: every watch and claim asks the apiserver itself). */
  pods?: PodCaches;
  /** Connections opened to the apiserver so far (TLS handshakes), when they are shared. */
  connections?: () => number;
  /** Stops the shared pod view and closes idle connections. */
  close(): void;
}

/**
 * The clients for one cluster. `shared` (a worker): one keep-alive connection pool for every request, watch, log
 * stream and attach of the process (the client library otherwise makes an agent, so a TLS handshake, per request),
 * and one pod cache per namespace for every execution's watch and claim.
 */
export function createKube(config: KubeConfig, options: { shared?: boolean } = {}): Kube {
  if (!options.shared) {
    return { config, core: config.makeApiClient(CoreV1Api), batch: config.makeApiClient(BatchV1Api), close() {} };
  }
  const agents = keepAliveAgents(config);
  const kube: Kube = {
    config,
    core: config.makeApiClient(CoreV1Api),
    batch: config.makeApiClient(BatchV1Api),
    connections: () => agents.opened,
    close() {
      kube.pods?.stop();
      agents.close();
    },
  };
  kube.pods = new PodCaches(kube);
  return kube;
}

/** What tells two agents apart: the server and the TLS material (read again by the library for every request). */
function agentKey(server: string | undefined, o: https.AgentOptions): string {
  const h = createHash('sha1');
  for (const v of [server, o.ca, o.cert, o.key, o.pfx, o.passphrase, o.servername, String(o.rejectUnauthorized)])
    h.update(v === undefined ? '-' : Buffer.isBuffer(v) ? v : typeof v === 'string' ? v : JSON.stringify(v)).update(
      '\0',
    );
  return h.digest('base64');
}

type AgentFactory = (
  cluster: { server?: string; proxyUrl?: string } | null | undefined,
  agentOptions: https.AgentOptions,
) => http.Agent;

/**
 * Makes the KubeConfig hand out one keep-alive agent (per set of TLS options) instead of a new one per request. The
 * library asks `createAgent` for every request, watch, log stream and WebSocket upgrade.
 */
function keepAliveAgents(config: KubeConfig): { opened: number; close(): void } {
  const made = new Map<string, http.Agent>();
  const state = {
    opened: 0,
    close() {
      for (const a of made.values()) a.destroy();
      made.clear();
    },
  };
  // createAgent is private in the library's typings; it is what every request, watch and upgrade goes through.
  const target = config as unknown as { createAgent: AgentFactory };
  const original = target.createAgent.bind(config);
  target.createAgent = (cluster, agentOptions) => {
    if (cluster?.proxyUrl) return original(cluster, agentOptions);
    const key = agentKey(cluster?.server, agentOptions);
    let agent = made.get(key);
    if (!agent) {
      const options = { ...agentOptions, keepAlive: true, scheduling: 'lifo' as const };
      agent = cluster?.server?.startsWith('http:') ? new http.Agent(options) : new https.Agent(options);
      const create = (agent as unknown as { createConnection: (...a: unknown[]) => unknown }).createConnection;
      (agent as unknown as { createConnection: (...a: unknown[]) => unknown }).createConnection = function (
        this: unknown,
        ...a: unknown[]
      ) {
        state.opened++;
        return create.apply(this, a);
      };
      made.set(key, agent);
    }
    return agent;
  };
  return state;
}

export interface ApiStatus {
  code: number;
  reason: string;
  message: string;
}

/** The HTTP status and Kubernetes Status reason of an API error, or undefined for other errors. */
export function apiStatus(err: unknown): ApiStatus | undefined {
  if (!(err instanceof ApiException)) return undefined;
  const e = err as ApiException<unknown>;
  let body: { reason?: string; message?: string } = {};
  try {
    body = typeof e.body === 'string' ? (JSON.parse(e.body) as typeof body) : ((e.body as typeof body) ?? {});
  } catch {
    // Not a Status object (e.g. a proxy's HTML page).
  }
  return {
    code: e.code,
    reason: body.reason ?? '',
    message: body.message ?? (typeof e.body === 'string' ? e.body : e.message),
  };
}

export const isNotFound = (err: unknown): boolean => apiStatus(err)?.code === 404;
/** 409 with reason AlreadyExists; a 409 Conflict (e.g. a ResourceQuota update race) is something else: retried. */
export const isAlreadyExists = (err: unknown): boolean => {
  const s = apiStatus(err);
  return s?.code === 409 && s.reason === 'AlreadyExists';
};

/**
 * Failure types of the Kubernetes API's answers (their meanings: core/failures.ts). 401/403 may come from wrong
 * credentials or RBAC, or from an apiserver that has just restarted and not yet synced its authorizer (seen under
 * chaos): retried, and a real misconfiguration fails when the step's retry window ends. A full quota is retried
 * until it frees up or the step's time runs out.
 */
export const FAILURE = {
  kubernetesRejected: 'KubernetesRejected',
  kubernetesForbidden: 'KubernetesForbidden',
  kubernetesUnavailable: 'KubernetesUnavailable',
  quotaExceeded: 'QuotaExceeded',
  nameConflict: 'NameConflict',
} as const satisfies Record<string, FailureReason>;

/** Wraps an error from the Kubernetes API into an ApplicationFailure with a type and the right retry behaviour. */
export function kubeFailure(err: unknown, action: string): ApplicationFailure {
  if (err instanceof ApplicationFailure) return err;
  const s = apiStatus(err) ?? upgradeStatus(err);
  if (!s) return ApplicationFailure.retryable(`${action}: ${messageOf(err)}`, FAILURE.kubernetesUnavailable);
  const text = `${action}: HTTP ${s.code} ${s.reason}: ${s.message}`;
  if (s.code === 403 && /exceeded quota/i.test(s.message)) {
    return ApplicationFailure.retryable(text, FAILURE.quotaExceeded, s);
  }
  if (s.code === 401 || s.code === 403) {
    return ApplicationFailure.retryable(text, FAILURE.kubernetesForbidden, s);
  }
  if ([400, 404, 422].includes(s.code)) {
    return ApplicationFailure.nonRetryable(text, FAILURE.kubernetesRejected, s);
  }
  return ApplicationFailure.retryable(text, FAILURE.kubernetesUnavailable, s);
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  const m = (err as { message?: unknown } | null)?.message;
  return typeof m === 'string' ? m : String(err);
}

/** A refused WebSocket upgrade (attach) carries only its HTTP status, in the message. */
function upgradeStatus(err: unknown): ApiStatus | undefined {
  const m = /Unexpected server response: (\d{3})/.exec(messageOf(err));
  return m ? { code: Number(m[1]), reason: '', message: messageOf(err) } : undefined;
}

/** Runs one API call; its error becomes a typed failure that names `action`. */
export async function kubeCall<T>(action: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw kubeFailure(err, action);
  }
}

/** Runs one API call that may find nothing: 404 gives undefined, other errors a typed failure. */
export async function kubeCallOrMissing<T>(action: string, call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw kubeFailure(err, action);
  }
}

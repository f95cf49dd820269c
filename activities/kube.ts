/**
 * The Kubernetes clients the activities use, and how an API error becomes a typed activity failure: retried when
 * the cluster may heal by itself, not retried when only a person can fix it.
 */
import { ApiException, BatchV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { ApplicationFailure } from '@temporalio/common';
import type { FailureReason } from '../core/failures';

export interface Kube {
  config: KubeConfig;
  core: CoreV1Api;
  batch: BatchV1Api;
}

export function createKube(config: KubeConfig): Kube {
  return { config, core: config.makeApiClient(CoreV1Api), batch: config.makeApiClient(BatchV1Api) };
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

/**
 * What a worker needs from its cluster, checked before it polls for tasks: a worker that cannot create its sandboxes
 * would otherwise take executions and fail each of them only after minutes of retries. Each problem becomes one
 * PreflightError that names what is missing and how to fix it.
 *
 * The sandbox images are not checked: seeing which images a node holds needs `list nodes`, a cluster-wide permission
 * the worker does not get (k8s/rbac.yaml). A missing image fails the first execution that needs it, as
 * ImagePullFailed.
 */
import {
  ApiException,
  AuthenticationV1Api,
  AuthorizationV1Api,
  Observable,
  VersionApi,
  type KubeConfig,
  type ConfigurationOptions,
  type V1Pod,
} from '@kubernetes/client-node';
import { apiStatus, createKube, type Kube } from '../activities/kube';
import { hardenedPodSpec } from '../core/manifests';
import type { ExecutionPolicy } from '../core/policy';
import type { WorkerConfig } from './config';
import { loadKubeConfig } from './connect';

/** How long the API server gets to answer each round of checks: a worker that cannot reach it says so in seconds. */
export const PREFLIGHT_TIMEOUT_MS = 5_000;
/** How often a running worker re-checks that the API server answers (`/readyz` reports the last failure). */
export const RECHECK_INTERVAL_MS = 30_000;

export type PreflightCheck = 'kubeconfig' | 'kubernetes' | 'namespace' | 'access' | 'runtimeClass';

export class PreflightError extends Error {
  override readonly name = 'PreflightError';
  constructor(
    readonly check: PreflightCheck,
    readonly problem: string,
    readonly fix: string,
  ) {
    super(`${problem} (${fix})`);
  }
}

export interface Access {
  group: string;
  resource: string;
  subresource?: string;
  verb: string;
}

const grant = (group: string, resource: string, verbs: string[], subresource?: string): Access[] =>
  verbs.map((verb) => ({ group, resource, verb, ...(subresource ? { subresource } : {}) }));

/** Every verb the activities use in the sandbox namespace: the Role in k8s/rbac.yaml, which a unit test compares. */
export const REQUIRED_ACCESS: Access[] = [
  ...grant('', 'configmaps', ['create', 'get', 'list', 'patch', 'delete']),
  ...grant('batch', 'jobs', ['create', 'get', 'list', 'delete']),
  ...grant('', 'pods', ['create', 'get', 'list', 'watch', 'patch', 'delete']),
  ...grant('', 'pods', ['get'], 'log'),
  ...grant('', 'pods', ['get', 'create'], 'attach'),
  ...grant('', 'pods', ['get', 'create'], 'exec'),
];

export const describeAccess = (a: Access): string =>
  `${a.verb} ${a.resource}${a.subresource ? `/${a.subresource}` : ''}`;

/** What the dry-run creation of a sandbox pod showed; 'undecided' when something else stopped it (RBAC, a full quota). */
export type DryRun = 'admitted' | 'namespaceMissing' | 'namespaceTerminating' | 'runtimeClassMissing' | 'undecided';

/** The answers the checks gathered once the API server answered. */
export interface Findings {
  namespace: string;
  runtimeClassName: string;
  denied: Access[];
  dryRun: DryRun;
  /** Who the worker is to Kubernetes; only looked up when something is denied. */
  identity?: string;
}

const APPLY_K8S = 'kubectl apply -k k8s/';
const KUBECONFIG_FIX = 'set KUBECONFIG to a kubeconfig for the cluster, or run the worker in the cluster';

/** The first problem the findings show, most basic first; undefined when the worker has what it needs. */
export function verdict(f: Findings): PreflightError | undefined {
  const ns = `namespace "${f.namespace}"`;
  const who = f.identity ? ` (${f.identity})` : '';
  if (f.dryRun === 'namespaceMissing') {
    return new PreflightError('namespace', `${ns} does not exist`, `${APPLY_K8S}, or set DS_SANDBOX_NAMESPACE`);
  }
  if (f.dryRun === 'namespaceTerminating') {
    return new PreflightError('namespace', `${ns} is being deleted`, `recreate it with ${APPLY_K8S}`);
  }
  // A Role lives in its namespace: a worker allowed nothing at all there cannot tell a missing namespace from a
  // missing RoleBinding, so the message names both.
  if (f.denied.length > 0 && f.denied.length === REQUIRED_ACCESS.length) {
    return new PreflightError(
      'access',
      `the worker${who} may do nothing in ${ns}: it does not exist, or the worker's Role is not bound there`,
      `${APPLY_K8S} to create both, or set DS_SANDBOX_NAMESPACE to the sandbox namespace`,
    );
  }
  if (f.denied.length > 0) {
    return new PreflightError(
      'access',
      `the worker${who} may not ${f.denied.map(describeAccess).join(', ')} in ${ns}`,
      `bind it to the durable-sandbox-worker Role of k8s/rbac.yaml: ${APPLY_K8S}`,
    );
  }
  if (f.dryRun === 'runtimeClassMissing') {
    return new PreflightError(
      'runtimeClass',
      `RuntimeClass "${f.runtimeClassName}" does not exist: sandbox pods would be refused`,
      'install gVisor (GKE Sandbox) and its RuntimeClass, or set DS_RUNTIME_CLASS',
    );
  }
  return undefined;
}

/** A request option that gives each request `timeoutMs` to answer (its own signal: they run side by side). */
function timeout(timeoutMs: number): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx) => {
          ctx.setSignal(AbortSignal.timeout(timeoutMs));
          return new Observable(Promise.resolve(ctx));
        },
        post: (res) => new Observable(Promise.resolve(res)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

const serverOf = (kc: KubeConfig): string => kc.getCurrentCluster()?.server ?? 'the default cluster';

const messageOf = (err: unknown): string => {
  const m = (err as { message?: unknown } | null)?.message;
  return typeof m === 'string' ? m : String(err);
};

/** Why a request got no answer, without the HTTP client's wrapping ("request to … failed, reason: …"). */
export function unreachableReason(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string } | undefined;
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') return `no answer within ${timeoutMs / 1000} s`;
  const message = messageOf(err);
  return /reason: (.*)$/.exec(message)?.[1] ?? message;
}

/** The API server's answer to GET /version, as a problem; undefined when it answered. */
export async function apiServerProblem(
  kc: KubeConfig,
  timeoutMs = PREFLIGHT_TIMEOUT_MS,
): Promise<PreflightError | undefined> {
  const server = serverOf(kc);
  try {
    await kc.makeApiClient(VersionApi).getCode({}, timeout(timeoutMs));
    return undefined;
  } catch (err) {
    if (err instanceof ApiException && (err.code === 401 || err.code === 403)) {
      return new PreflightError(
        'kubernetes',
        `Kubernetes API at ${server} refused the worker's credentials (HTTP ${err.code})`,
        'renew the token or certificate in KUBECONFIG, or check the ServiceAccount',
      );
    }
    const why = err instanceof ApiException ? `it answers HTTP ${err.code}` : unreachableReason(err, timeoutMs);
    return new PreflightError(
      'kubernetes',
      `Kubernetes API at ${server} is not reachable: ${why}`,
      'start the cluster, or point KUBECONFIG at a running one',
    );
  }
}

/**
 * With no KUBECONFIG, no ~/.kube/config and no pod token the client library falls back to a made-up cluster at
 * localhost:8080, whose first request fails with a message that does not say so.
 */
export function noCredentials(kc: KubeConfig): PreflightError | undefined {
  const cluster = kc.getCurrentCluster();
  const fallback =
    kc.currentContext === 'loaded-context' && cluster?.name === 'cluster' && cluster.server === 'http://localhost:8080';
  return fallback
    ? new PreflightError(
        'kubeconfig',
        'no Kubernetes credentials: KUBECONFIG is unset, there is no ~/.kube/config and this is not a pod',
        KUBECONFIG_FIX,
      )
    : undefined;
}

/** The worker's Kubernetes client; a kubeconfig that cannot be read is a PreflightError. */
export function loadKube(config: Pick<WorkerConfig, 'kubeconfig'>): Kube {
  try {
    return createKube(loadKubeConfig(config.kubeconfig));
  } catch (err) {
    throw new PreflightError(
      'kubeconfig',
      `cannot load the kubeconfig ${config.kubeconfig ?? '(default)'}: ${messageOf(err)}`,
      KUBECONFIG_FIX,
    );
  }
}

async function deniedAccess(kc: KubeConfig, namespace: string, opts: ConfigurationOptions): Promise<Access[]> {
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const allowed = await Promise.all(
    REQUIRED_ACCESS.map(async (a) => {
      const review = await authz.createSelfSubjectAccessReview(
        {
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: { resourceAttributes: { ...a, namespace } },
          },
        },
        opts,
      );
      return review.status?.allowed === true;
    }),
  );
  return REQUIRED_ACCESS.filter((_, i) => !allowed[i]);
}

/** A sandbox pod as the worker would make it, never stored: what admission alone has to say about it. */
export function probePod(policy: ExecutionPolicy): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'durable-sandbox-preflight-', namespace: policy.namespace },
    spec: hardenedPodSpec(policy, {
      image: policy.images.python,
      command: ['true'],
      env: {},
      cpu: policy.defaultCpu,
      memory: policy.defaultMemory,
      sandboxVolume: { emptyDir: {} },
    }),
  };
}

/** What an API error from the dry run says about the namespace and the RuntimeClass. */
export function dryRunOutcome(status: { code: number; message: string }): DryRun {
  if (status.code === 404 && /namespaces? "[^"]*" not found/.test(status.message)) return 'namespaceMissing';
  if (status.code === 403 && /because it is being terminated/.test(status.message)) return 'namespaceTerminating';
  if (status.code === 403 && /RuntimeClass "[^"]*" not found/.test(status.message)) return 'runtimeClassMissing';
  return 'undecided';
}

/**
 * The pod's dry run passes the admission a real one does: a missing namespace and a missing RuntimeClass are refused
 * there, with no permission beyond the worker's own `create pods` (reading a RuntimeClass would need a cluster-wide
 * one).
 */
async function dryRunPod(kube: Kube, policy: ExecutionPolicy, opts: ConfigurationOptions): Promise<DryRun> {
  try {
    await kube.core.createNamespacedPod({ namespace: policy.namespace, body: probePod(policy), dryRun: 'All' }, opts);
    return 'admitted';
  } catch (err) {
    const status = apiStatus(err);
    if (!status) throw err;
    return dryRunOutcome(status);
  }
}

async function identityOf(kc: KubeConfig, opts: ConfigurationOptions): Promise<string | undefined> {
  try {
    const review = await kc
      .makeApiClient(AuthenticationV1Api)
      .createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } }, opts);
    return review.status?.userInfo?.username;
  } catch {
    return undefined; // The message is still useful without it.
  }
}

/**
 * Checks that there are credentials and the API server answers, then side by side the worker's permissions in the
 * sandbox namespace and a dry run of a sandbox pod (namespace, RuntimeClass). Throws the first problem as a
 * PreflightError.
 */
export async function preflight(
  config: Pick<WorkerConfig, 'policy'>,
  kube: Kube,
  timeoutMs = PREFLIGHT_TIMEOUT_MS,
): Promise<void> {
  const unreachable = noCredentials(kube.config) ?? (await apiServerProblem(kube.config, timeoutMs));
  if (unreachable) throw unreachable;
  const opts = timeout(timeoutMs);
  const { namespace, runtimeClassName } = config.policy;
  let findings: Findings;
  try {
    const [denied, dryRun] = await Promise.all([
      deniedAccess(kube.config, namespace, opts),
      dryRunPod(kube, config.policy, opts),
    ]);
    const identity = denied.length ? await identityOf(kube.config, opts) : undefined;
    findings = { namespace, runtimeClassName, denied, dryRun, ...(identity ? { identity } : {}) };
  } catch (err) {
    throw new PreflightError(
      'kubernetes',
      `Kubernetes API at ${serverOf(kube.config)} failed the worker's checks: ${unreachableReason(err, timeoutMs)}`,
      'check the API server',
    );
  }
  const problem = verdict(findings);
  if (problem) throw problem;
}

/** Re-checks every `everyMs` that the API server answers; `problem()` is the last check's failure, if it failed. */
export function watchApiServer(
  kc: KubeConfig,
  everyMs = RECHECK_INTERVAL_MS,
): { problem: () => string | undefined; stop: () => void } {
  let problem: string | undefined;
  const timer = setInterval(() => {
    void apiServerProblem(kc).then((p) => {
      problem = p?.message;
    });
  }, everyMs);
  // The check never keeps the process alive.
  timer.unref();
  return { problem: () => problem, stop: () => clearInterval(timer) };
}

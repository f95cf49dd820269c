/**
 * The worker's Kubernetes identity (the durable-sandbox-worker ServiceAccount, whose token is what KUBECONFIG holds
 * for the local stack) may do exactly what the activities need in the sandbox namespace and nothing else: no
 * Secrets, no pods elsewhere, no creating pods there, no port-forward. Checked by the apiserver itself: SelfSubjectAccessReviews
 * for every verb, and real calls where they are cheap. A real call to a missing object answers 404 only when the
 * request was authorized (authorization runs before the lookup) and 403 when it was not. The warm pool needs pods
 * create and patch and pods/attach create (the task's delivery), sessions pods/exec (their workspace's save and
 * restore), in the sandbox namespace only.
 */
import {
  ApiException,
  AuthenticationV1Api,
  AuthorizationV1Api,
  BatchV1Api,
  CoreV1Api,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type V1ResourceAttributes,
} from '@kubernetes/client-node';
import { loadKubeConfig } from '../../worker/connect';
import { SANDBOX_NAMESPACE, uniqueId } from '../helpers/stack';

jest.setTimeout(60_000);

// test/helpers/stack applied the local stack's env: KUBECONFIG is the worker's (DS_ADMIN_KUBECONFIG is the admin's).
const kc = loadKubeConfig(process.env.KUBECONFIG);
const core = kc.makeApiClient(CoreV1Api);
const batch = kc.makeApiClient(BatchV1Api);
const authz = kc.makeApiClient(AuthorizationV1Api);
const WORKER = 'system:serviceaccount:durable-sandbox-system:durable-sandbox-worker';
const NS = SANDBOX_NAMESPACE;

/** HTTP status of a call: 2xx when it succeeded, else the API's error code. */
async function statusOf(call: () => Promise<unknown>): Promise<number> {
  try {
    await call();
    return 200;
  } catch (err) {
    if (err instanceof ApiException) return (err as ApiException<unknown>).code;
    throw err;
  }
}

async function allowed(attrs: V1ResourceAttributes): Promise<boolean> {
  const review = await authz.createSelfSubjectAccessReview({
    body: {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SelfSubjectAccessReview',
      spec: { resourceAttributes: attrs },
    },
  });
  return review.status!.allowed;
}

test("the tests speak as the worker's ServiceAccount, not as an admin", async () => {
  const review = await kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({
    body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
  });
  expect(review.status?.userInfo?.username).toBe(WORKER);
});

describe('what the activities use is allowed, in the sandbox namespace', () => {
  const verbs: [string, string, string, string[]][] = [
    // group, resource, subresource, verbs
    ['', 'configmaps', '', ['create', 'get', 'list', 'patch', 'delete']],
    ['batch', 'jobs', '', ['create', 'get', 'list', 'delete']],
    ['', 'pods', '', ['create', 'get', 'list', 'watch', 'patch', 'delete']],
    ['', 'pods', 'log', ['get']],
    ['', 'pods', 'attach', ['get', 'create']],
    ['', 'pods', 'exec', ['get', 'create']],
  ];
  const cases = verbs.flatMap(([group, resource, subresource, vs]) =>
    vs.map(
      (verb) =>
        [`${verb} ${resource}${subresource ? `/${subresource}` : ''}`, { group, resource, subresource, verb }] as const,
    ),
  );

  test.each(cases)('SelfSubjectAccessReview: %s', async (_name, attrs) => {
    expect(await allowed({ ...attrs, namespace: NS })).toBe(true);
  });

  test('real calls: ConfigMap create, get, patch, list, delete', async () => {
    const name = uniqueId('rbac-cm');
    const labels = { 'durable-sandbox.dev/test': 'rbac' };
    await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name, labels }, data: { a: '1' } } });
    try {
      expect((await core.readNamespacedConfigMap({ name, namespace: NS })).data).toEqual({ a: '1' });
      const patched = await core.patchNamespacedConfigMap(
        { name, namespace: NS, body: { metadata: { annotations: { patched: 'yes' } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      expect(patched.metadata?.annotations?.patched).toBe('yes');
      const list = await core.listNamespacedConfigMap({
        namespace: NS,
        labelSelector: 'durable-sandbox.dev/test=rbac',
      });
      expect(list.items.map((c) => c.metadata?.name)).toContain(name);
    } finally {
      await core.deleteNamespacedConfigMap({ name, namespace: NS });
    }
    expect(await statusOf(() => core.readNamespacedConfigMap({ name, namespace: NS }))).toBe(404);
  });

  test('real calls: Job create (suspended: no pod ever runs), get, list, delete', async () => {
    const name = uniqueId('rbac-job');
    await batch.createNamespacedJob({
      namespace: NS,
      body: {
        metadata: { name, labels: { 'durable-sandbox.dev/test': 'rbac' } },
        spec: {
          suspend: true,
          backoffLimit: 0,
          ttlSecondsAfterFinished: 60,
          template: {
            spec: {
              restartPolicy: 'Never',
              automountServiceAccountToken: false,
              securityContext: { runAsNonRoot: true, runAsUser: 1001, seccompProfile: { type: 'RuntimeDefault' } },
              containers: [
                {
                  name: 'never-runs',
                  image: process.env.DS_IMAGE ?? 'python:3.12-slim',
                  command: ['true'],
                  securityContext: {
                    allowPrivilegeEscalation: false,
                    capabilities: { drop: ['ALL'] },
                    readOnlyRootFilesystem: true,
                  },
                },
              ],
            },
          },
        },
      },
    });
    try {
      expect((await batch.readNamespacedJob({ name, namespace: NS })).spec?.suspend).toBe(true);
      const list = await batch.listNamespacedJob({ namespace: NS, labelSelector: 'durable-sandbox.dev/test=rbac' });
      expect(list.items.map((j) => j.metadata?.name)).toContain(name);
    } finally {
      await batch.deleteNamespacedJob({ name, namespace: NS, propagationPolicy: 'Background' });
    }
  });

  test('real calls: pods list and watch, pod get/delete/log/attach/patch reach the lookup (404, not 403)', async () => {
    expect(
      await statusOf(() => core.listNamespacedPod({ namespace: NS, labelSelector: 'durable-sandbox.dev/test=none' })),
    ).toBe(200);
    const missing = uniqueId('no-such-pod');
    expect(await statusOf(() => core.readNamespacedPod({ name: missing, namespace: NS }))).toBe(404);
    expect(await statusOf(() => core.deleteNamespacedPod({ name: missing, namespace: NS }))).toBe(404);
    expect(await statusOf(() => core.readNamespacedPodLog({ name: missing, namespace: NS }))).toBe(404);
    expect(
      await statusOf(() => core.connectPostNamespacedPodAttach({ name: missing, namespace: NS, stdin: true })),
    ).toBe(404);
    expect(
      await statusOf(() =>
        core.patchNamespacedPod(
          { name: missing, namespace: NS, body: { metadata: { labels: { a: 'b' } } } },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        ),
      ),
    ).toBe(404);
    expect(await statusOf(() => batch.deleteNamespacedJob({ name: missing, namespace: NS }))).toBe(404);
    // A watch that the apiserver refused would end at once with an error.
    let ended: unknown = 'open';
    const watch = await new Watch(kc).watch(
      `/api/v1/namespaces/${NS}/pods`,
      { labelSelector: 'durable-sandbox.dev/test=none' },
      () => undefined,
      (err: unknown) => {
        ended = err ?? 'closed';
      },
    );
    await new Promise((r) => setTimeout(r, 1000));
    expect(ended).toBe('open');
    watch.abort();
  });
});

describe('everything else is refused', () => {
  test.each([
    ['get secrets in the sandbox namespace', { resource: 'secrets', verb: 'get', namespace: NS }],
    ['list secrets in the sandbox namespace', { resource: 'secrets', verb: 'list', namespace: NS }],
    [
      "list secrets in the worker's own namespace",
      { resource: 'secrets', verb: 'list', namespace: 'durable-sandbox-system' },
    ],
    ['list pods in kube-system', { resource: 'pods', verb: 'list', namespace: 'kube-system' }],
    ['list pods in all namespaces', { resource: 'pods', verb: 'list' }],
    ['create pods in kube-system', { resource: 'pods', verb: 'create', namespace: 'kube-system' }],
    [
      "create pods in the worker's own namespace",
      { resource: 'pods', verb: 'create', namespace: 'durable-sandbox-system' },
    ],
    [
      'create pods/exec in kube-system',
      { resource: 'pods', subresource: 'exec', verb: 'create', namespace: 'kube-system' },
    ],
    [
      'create pods/attach in kube-system',
      { resource: 'pods', subresource: 'attach', verb: 'create', namespace: 'kube-system' },
    ],
    ['watch jobs in the sandbox namespace', { group: 'batch', resource: 'jobs', verb: 'watch', namespace: NS }],
    [
      'create pods/portforward in the sandbox namespace',
      { resource: 'pods', subresource: 'portforward', verb: 'create', namespace: NS },
    ],
    ['update pods in the sandbox namespace', { resource: 'pods', verb: 'update', namespace: NS }],
    ['create jobs in kube-system', { group: 'batch', resource: 'jobs', verb: 'create', namespace: 'kube-system' }],
    [
      'create serviceaccount tokens',
      { resource: 'serviceaccounts', subresource: 'token', verb: 'create', namespace: 'durable-sandbox-system' },
    ],
    ['patch its own Role', { group: 'rbac.authorization.k8s.io', resource: 'roles', verb: 'patch', namespace: NS }],
    [
      'create rolebindings',
      { group: 'rbac.authorization.k8s.io', resource: 'rolebindings', verb: 'create', namespace: NS },
    ],
    [
      'delete networkpolicies',
      { group: 'networking.k8s.io', resource: 'networkpolicies', verb: 'delete', namespace: NS },
    ],
    ['update the resource quota', { resource: 'resourcequotas', verb: 'update', namespace: NS }],
    ['patch the sandbox namespace (its Pod Security labels)', { resource: 'namespaces', verb: 'patch', name: NS }],
    ['list nodes', { resource: 'nodes', verb: 'list' }],
    ['get nodes/proxy (the kubelet API)', { resource: 'nodes', subresource: 'proxy', verb: 'get' }],
  ])('SelfSubjectAccessReview: %s', async (_name, attrs) => {
    expect(await allowed(attrs)).toBe(false);
  });

  test('real calls are refused with 403', async () => {
    const missing = uniqueId('no-such-pod');
    expect(await statusOf(() => core.listNamespacedSecret({ namespace: NS }))).toBe(403);
    expect(await statusOf(() => core.readNamespacedSecret({ name: 'anything', namespace: NS }))).toBe(403);
    expect(await statusOf(() => core.listNamespacedSecret({ namespace: 'durable-sandbox-system' }))).toBe(403);
    expect(await statusOf(() => core.listNamespacedPod({ namespace: 'kube-system' }))).toBe(403);
    expect(await statusOf(() => core.listPodForAllNamespaces())).toBe(403);
    expect(await statusOf(() => core.listNode())).toBe(403);
    expect(
      await statusOf(() =>
        core.createNamespacedPod({
          namespace: 'durable-sandbox-system',
          body: { metadata: { name: missing }, spec: { containers: [{ name: 'x', image: 'busybox' }] } },
        }),
      ),
    ).toBe(403);
    // Refused before the (missing) pod is even looked up.
    expect(
      await statusOf(() =>
        core.connectPostNamespacedPodExec({ name: missing, namespace: 'kube-system', command: 'id', stdout: true }),
      ),
    ).toBe(403);
  });
});

test('SelfSubjectRulesReview: in the sandbox namespace the worker holds exactly the Role the activities need', async () => {
  const review = await authz.createSelfSubjectRulesReview({
    body: { apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectRulesReview', spec: { namespace: NS } },
  });
  const rules = review
    .status!.resourceRules // Rules every authenticated user gets (self reviews, discovery) are not the worker's.
    .filter(
      (r) => !r.apiGroups?.some((g) => g.startsWith('authorization.k8s.io') || g.startsWith('authentication.k8s.io')),
    )
    .map(
      (r) =>
        `${(r.apiGroups ?? []).join(',')}/${(r.resources ?? []).join(',')}: ${[...(r.verbs ?? [])].sort().join(',')}`,
    )
    .sort();
  expect(rules).toEqual([
    '/configmaps: create,delete,get,list,patch',
    '/pods/attach: create,get',
    '/pods/exec: create,get',
    '/pods/log: get',
    '/pods: create,delete,get,list,patch,watch',
    'batch/jobs: create,delete,get,list',
  ]);
});

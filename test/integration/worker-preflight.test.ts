/**
 * A worker process that lacks what it needs from the cluster exits at start with one line on stderr saying what is
 * missing (worker/preflight.ts), instead of polling and failing every execution: Kubernetes unreachable, the sandbox
 * namespace missing, its permissions missing, the RuntimeClass missing. With everything in place it starts and is
 * ready.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AuthorizationV1Api, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { freePort } from '../../dev/free-port';
import { PROJECT_ROOT } from '../../cli/local-stack';
import { loadConfig } from '../../worker/config';
import { loadKube, preflight, REQUIRED_ACCESS } from '../../worker/preflight';
import { adminKube, eventually, SANDBOX_NAMESPACE, uniqueId } from '../helpers/stack';

jest.setTimeout(120_000);
const SYSTEM_NAMESPACE = 'durable-sandbox-system';
const admin = adminKube();
const dir = mkdtempSync(path.join(os.tmpdir(), 'ds-preflight-'));
const account = uniqueId('preflight-sa');
const partialRole = uniqueId('preflight-partial');
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  const rbac = admin.config.makeApiClient(RbacAuthorizationV1Api);
  await rbac.deleteNamespacedRoleBinding({ name: partialRole, namespace: SANDBOX_NAMESPACE }).catch(() => undefined);
  await rbac.deleteNamespacedRole({ name: partialRole, namespace: SANDBOX_NAMESPACE }).catch(() => undefined);
  await admin.core
    .deleteNamespacedServiceAccount({ name: account, namespace: SYSTEM_NAMESPACE })
    .catch(() => undefined);
});

interface Exit {
  code: number | null;
  stderr: string;
  ms: number;
}

/** Runs the worker process (worker/main.ts from the sources) with the stack's environment plus `env`. */
function runWorker(env: Record<string, string>, until?: (w: { stop(): void }) => Promise<void>): Promise<Exit> {
  const started = Date.now();
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'worker/main.ts'], {
    cwd: PROJECT_ROOT,
    env: {
      ...process.env,
      DS_TASK_QUEUE: uniqueId('test-preflight'),
      DS_WARM_POOL_SIZE: '0',
      DS_RECONCILE_INTERVAL_SECONDS: '0',
      DS_LOG_LEVEL: 'WARN',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code) => resolve({ code, stderr, ms: Date.now() - started })),
  );
  // A failed `until` shows in what the test then sees (never ready), not as an unhandled rejection.
  until?.({ stop: () => child.kill('SIGTERM') }).catch(() => undefined);
  return exited;
}

/** The stack's worker kubeconfig with `change` applied to its cluster and user, written to a file of its own. */
function kubeconfigFile(change: { server?: string; token?: string }): string {
  const kc = new KubeConfig();
  kc.loadFromFile(process.env.KUBECONFIG!);
  kc.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, ...(change.server ? { server: change.server } : {}) })),
    users: kc.users.map((u) => ({ ...u, ...(change.token ? { token: change.token } : {}) })),
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
  const file = path.join(dir, `${uniqueId('kubeconfig')}.yaml`);
  writeFileSync(file, kc.exportConfig(), { mode: 0o600 });
  return file;
}

/** A token for a ServiceAccount of its own, bound to nothing unless a test binds it. */
async function accountKubeconfig(): Promise<string> {
  await admin.core
    .createNamespacedServiceAccount({ namespace: SYSTEM_NAMESPACE, body: { metadata: { name: account } } })
    .catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
  const request = await admin.core.createNamespacedServiceAccountToken({
    name: account,
    namespace: SYSTEM_NAMESPACE,
    body: { spec: { audiences: [], expirationSeconds: 600 } },
  });
  return kubeconfigFile({ token: request.status!.token });
}

const oneLine = (e: Exit): string => {
  const lines = e.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^worker: cannot start: /);
  return lines[0];
};

test('Kubernetes unreachable (a closed port): exits in seconds with one line naming the API server', async () => {
  const port = await freePort();
  const exit = await runWorker({ KUBECONFIG: kubeconfigFile({ server: `https://127.0.0.1:${port}` }) });
  expect(exit.code).not.toBe(0);
  expect(exit.ms).toBeLessThan(20_000);
  expect(oneLine(exit)).toMatch(
    new RegExp(
      `^worker: cannot start: Kubernetes API at https://127\\.0\\.0\\.1:${port} is not reachable: .*ECONNREFUSED`,
    ),
  );
});

test('a kubeconfig that does not exist: one line naming it', async () => {
  const exit = await runWorker({ KUBECONFIG: '/nonexistent' });
  expect(exit.code).not.toBe(0);
  expect(oneLine(exit)).toMatch(/^worker: cannot start: cannot load the kubeconfig \/nonexistent: .*ENOENT/);
});

test('no kubeconfig anywhere: one line saying so', async () => {
  // An empty KUBECONFIG counts as unset; a home of its own has no ~/.kube/config.
  const exit = await runWorker({ KUBECONFIG: '', HOME: dir });
  expect(exit.code).not.toBe(0);
  expect(oneLine(exit)).toMatch(/^worker: cannot start: no Kubernetes credentials: KUBECONFIG is unset/);
});

test('the sandbox namespace missing: one line naming it', async () => {
  const exit = await runWorker({ DS_SANDBOX_NAMESPACE: 'does-not-exist' });
  expect(exit.code).not.toBe(0);
  // The worker's Role lives in its namespace: in a missing one it may do nothing, and cannot tell why.
  expect(oneLine(exit)).toMatch(
    /may do nothing in namespace "does-not-exist": it does not exist, or the worker's Role is not bound there .*DS_SANDBOX_NAMESPACE/,
  );
  // Credentials that may look (the admin's) see that it does not exist.
  const asAdmin = await runWorker({
    DS_SANDBOX_NAMESPACE: 'does-not-exist',
    KUBECONFIG: process.env.DS_ADMIN_KUBECONFIG!,
  });
  expect(oneLine(asAdmin)).toBe(
    'worker: cannot start: namespace "does-not-exist" does not exist (kubectl apply -k k8s/, or set DS_SANDBOX_NAMESPACE)',
  );
});

test('a ServiceAccount without the Role: one line naming the namespace; with part of it, naming what is missing', async () => {
  const kubeconfig = await accountKubeconfig();
  const user = `system:serviceaccount:${SYSTEM_NAMESPACE}:${account}`;
  const none = await runWorker({ KUBECONFIG: kubeconfig });
  expect(none.code).not.toBe(0);
  expect(oneLine(none)).toContain(`the worker (${user}) may do nothing in namespace "${SANDBOX_NAMESPACE}"`);

  // Everything but following logs and attaching.
  const missing = REQUIRED_ACCESS.filter((a) => a.subresource === 'log' || a.subresource === 'attach');
  const rules = REQUIRED_ACCESS.filter((a) => !missing.includes(a)).map((a) => ({
    apiGroups: [a.group],
    resources: [a.subresource ? `${a.resource}/${a.subresource}` : a.resource],
    verbs: [a.verb],
  }));
  const rbac = admin.config.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({ namespace: SANDBOX_NAMESPACE, body: { metadata: { name: partialRole }, rules } });
  await rbac.createNamespacedRoleBinding({
    namespace: SANDBOX_NAMESPACE,
    body: {
      metadata: { name: partialRole },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: partialRole },
      subjects: [{ kind: 'ServiceAccount', name: account, namespace: SYSTEM_NAMESPACE }],
    },
  });
  // The authorizer sees a new binding a moment later.
  const authz = admin.config.makeApiClient(AuthorizationV1Api);
  await eventually(
    () =>
      authz.createSubjectAccessReview({
        body: {
          spec: { user, resourceAttributes: { namespace: SANDBOX_NAMESPACE, resource: 'pods', verb: 'create' } },
        },
      }),
    (r) => r.status?.allowed === true,
  );
  const partial = await runWorker({ KUBECONFIG: kubeconfig });
  expect(partial.code).not.toBe(0);
  expect(oneLine(partial)).toBe(
    `worker: cannot start: the worker (${user}) may not get pods/log, get pods/attach, create pods/attach in namespace ` +
      `"${SANDBOX_NAMESPACE}" (bind it to the durable-sandbox-worker Role of k8s/rbac.yaml: kubectl apply -k k8s/)`,
  );
});

test('the RuntimeClass missing: one line naming it', async () => {
  const exit = await runWorker({ DS_RUNTIME_CLASS: 'no-such-runtime' });
  expect(exit.code).not.toBe(0);
  expect(oneLine(exit)).toMatch(
    /^worker: cannot start: RuntimeClass "no-such-runtime" does not exist: .*DS_RUNTIME_CLASS/,
  );
});

test('with everything in place the checks pass, and the worker process starts and is ready', async () => {
  const config = loadConfig(process.env);
  await expect(preflight(config, loadKube(config))).resolves.toBeUndefined();

  const port = await freePort();
  let ready = 0;
  const exit = await runWorker({ DS_HEALTH_ADDRESS: `127.0.0.1:${port}` }, async (w) => {
    try {
      await eventually(
        () =>
          fetch(`http://127.0.0.1:${port}/readyz`).then(
            (r) => r.status,
            () => 0,
          ),
        (s) => s === 200,
        90_000,
      );
      ready = 200;
    } finally {
      w.stop();
    }
  });
  expect(ready).toBe(200);
  expect(exit.stderr).toBe('');
});

import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { KubeConfig, loadAllYaml, type V1Role } from '@kubernetes/client-node';
import { DEFAULT_POLICY } from '../../core/policy';
import { freePort } from '../../dev/free-port';
import {
  apiServerProblem,
  describeAccess,
  dryRunOutcome,
  loadKube,
  noCredentials,
  PreflightError,
  probePod,
  REQUIRED_ACCESS,
  unreachableReason,
  verdict,
  watchApiServer,
  type Findings,
} from '../../worker/preflight';

const kubeconfigFor = (server: string): KubeConfig => {
  const kc = new KubeConfig();
  kc.loadFromClusterAndUser({ name: 'c', server, skipTLSVerify: true }, { name: 'u', token: 't' });
  return kc;
};

test('the permissions checked are exactly those the Role in k8s/rbac.yaml grants', () => {
  const docs = loadAllYaml(readFileSync(path.join(__dirname, '../../k8s/rbac.yaml'), 'utf8')) as { kind: string }[];
  const role = docs.find((d) => d.kind === 'Role') as V1Role;
  const granted = role.rules!.flatMap((r) =>
    r.apiGroups!.flatMap((group) =>
      r.resources!.flatMap((res) => {
        const [resource, subresource] = res.split('/');
        return r.verbs.map((verb) => `${group}|${resource}|${subresource ?? ''}|${verb}`);
      }),
    ),
  );
  const checked = REQUIRED_ACCESS.map((a) => `${a.group}|${a.resource}|${a.subresource ?? ''}|${a.verb}`);
  expect([...checked].sort()).toEqual([...granted].sort());
  expect(describeAccess({ group: '', resource: 'pods', subresource: 'log', verb: 'get' })).toBe('get pods/log');
});

describe('verdict: the first problem, most basic first', () => {
  const fine: Findings = { namespace: 'sbx', runtimeClassName: 'gvisor', denied: [], dryRun: 'admitted' };
  const podsLog = REQUIRED_ACCESS.find((a) => a.subresource === 'log')!;

  test('nothing missing: no problem; an undecided dry run (e.g. a full quota) is no problem either', () => {
    expect(verdict(fine)).toBeUndefined();
    expect(verdict({ ...fine, dryRun: 'undecided' })).toBeUndefined();
  });

  test('a missing namespace comes first and names the namespace and the setting', () => {
    const e = verdict({ ...fine, dryRun: 'namespaceMissing', denied: [podsLog] })!;
    expect(e).toBeInstanceOf(PreflightError);
    expect(e.check).toBe('namespace');
    expect(e.message).toBe('namespace "sbx" does not exist (kubectl apply -k k8s/, or set DS_SANDBOX_NAMESPACE)');
    expect(verdict({ ...fine, dryRun: 'namespaceTerminating' })?.message).toMatch(/namespace "sbx" is being deleted/);
  });

  test('allowed nothing at all: the namespace may be missing or the Role unbound, and the message says both', () => {
    const e = verdict({
      ...fine,
      denied: REQUIRED_ACCESS,
      dryRun: 'undecided',
      identity: 'system:serviceaccount:a:b',
    })!;
    expect(e.check).toBe('access');
    expect(e.message).toMatch(
      /^the worker \(system:serviceaccount:a:b\) may do nothing in namespace "sbx": it does not exist, or the worker's Role is not bound there \(/,
    );
    expect(e.message).toMatch(/DS_SANDBOX_NAMESPACE/);
  });

  test('some permissions missing: each is named, with the Role that grants them', () => {
    const attach = REQUIRED_ACCESS.find((a) => a.subresource === 'attach' && a.verb === 'create')!;
    const e = verdict({ ...fine, denied: [podsLog, attach], dryRun: 'runtimeClassMissing' })!;
    expect(e.check).toBe('access');
    expect(e.problem).toBe('the worker may not get pods/log, create pods/attach in namespace "sbx"');
    expect(e.fix).toMatch(/durable-sandbox-worker Role of k8s\/rbac\.yaml/);
  });

  test('a missing RuntimeClass names it and the setting', () => {
    const e = verdict({ ...fine, dryRun: 'runtimeClassMissing' })!;
    expect(e.check).toBe('runtimeClass');
    expect(e.message).toMatch(/^RuntimeClass "gvisor" does not exist: .*DS_RUNTIME_CLASS\)$/);
  });
});

test.each([
  [404, 'namespaces "does-not-exist" not found', 'namespaceMissing'],
  [403, 'pods "" is forbidden: pod rejected: RuntimeClass "gvisor" not found', 'runtimeClassMissing'],
  [
    403,
    'pods "x" is forbidden: unable to create new content in namespace sbx because it is being terminated',
    'namespaceTerminating',
  ],
  [
    403,
    'pods is forbidden: User "u" cannot create resource "pods" in API group "" in the namespace "sbx"',
    'undecided',
  ],
  [403, 'pods "x" is forbidden: exceeded quota: sandbox-quota, requested: pods=1', 'undecided'],
  [400, 'admission webhook "w" does not support dry run', 'undecided'],
])('the dry run answering HTTP %i "%s" means %s', (code, message, outcome) => {
  expect(dryRunOutcome({ code, message })).toBe(outcome);
});

test('the dry-run pod is the hardened sandbox pod, with the policy’s RuntimeClass and namespace', () => {
  const pod = probePod({ ...DEFAULT_POLICY, namespace: 'sbx' });
  expect(pod.metadata).toMatchObject({ namespace: 'sbx', generateName: 'durable-sandbox-preflight-' });
  expect(pod.spec).toMatchObject({ runtimeClassName: 'gvisor', automountServiceAccountToken: false });
  expect(probePod({ ...DEFAULT_POLICY, runtimeClassName: '' }).spec?.runtimeClassName).toBeUndefined();
});

test('why a request got no answer, without the HTTP client’s wrapping', () => {
  const refused = new Error('request to https://127.0.0.1:1/version failed, reason: connect ECONNREFUSED 127.0.0.1:1');
  expect(unreachableReason(refused, 5000)).toBe('connect ECONNREFUSED 127.0.0.1:1');
  expect(unreachableReason(Object.assign(new Error('aborted'), { name: 'AbortError' }), 5000)).toBe(
    'no answer within 5 s',
  );
});

test('a kubeconfig that cannot be read is a PreflightError naming the file', () => {
  expect(() => loadKube({ kubeconfig: '/nonexistent/kubeconfig' })).toThrow(PreflightError);
  expect(() => loadKube({ kubeconfig: '/nonexistent/kubeconfig' })).toThrow(
    /^cannot load the kubeconfig \/nonexistent\/kubeconfig: ENOENT/,
  );
});

test('no kubeconfig anywhere (the client library’s localhost:8080 fallback) is named as such', () => {
  const fallback = new KubeConfig();
  fallback.loadFromClusterAndUser(
    { name: 'cluster', server: 'http://localhost:8080', skipTLSVerify: false },
    { name: 'user' },
  );
  expect(noCredentials(fallback)?.message).toMatch(/^no Kubernetes credentials: KUBECONFIG is unset/);
  expect(noCredentials(kubeconfigFor('http://localhost:8080'))).toBeUndefined();
});

describe('the API server check', () => {
  let silent: Server;
  const sockets: Socket[] = [];
  beforeAll(async () => {
    // Accepts connections and never answers: a black-holed API server.
    silent = createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => {
    sockets.forEach((s) => s.destroy());
    silent.close();
  });

  test('a closed port: not reachable, at once, naming the server', async () => {
    const port = await freePort();
    const started = Date.now();
    const e = await apiServerProblem(kubeconfigFor(`https://127.0.0.1:${port}`));
    expect(Date.now() - started).toBeLessThan(2000);
    expect(e?.check).toBe('kubernetes');
    expect(e?.problem).toBe(
      `Kubernetes API at https://127.0.0.1:${port} is not reachable: connect ECONNREFUSED 127.0.0.1:${port}`,
    );
  });

  test('a server that never answers: given up after the timeout', async () => {
    const { port } = silent.address() as { port: number };
    const started = Date.now();
    const e = await apiServerProblem(kubeconfigFor(`https://127.0.0.1:${port}`), 300);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(e?.problem).toBe(`Kubernetes API at https://127.0.0.1:${port} is not reachable: no answer within 0.3 s`);
  });

  test('the periodic re-check reports the last failure', async () => {
    const port = await freePort();
    const watch = watchApiServer(kubeconfigFor(`https://127.0.0.1:${port}`), 20);
    try {
      expect(watch.problem()).toBeUndefined();
      for (let i = 0; i < 100 && !watch.problem(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(watch.problem()).toMatch(/is not reachable: connect ECONNREFUSED/);
    } finally {
      watch.stop();
    }
  });
});

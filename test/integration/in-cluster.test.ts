/**
 * The worker Deployment of k8s/, run inside the local cluster (through the local stack's overlay,
 * scripts/stack/manifests/worker): its image built from this checkout without a registry, its pod hardened, ready only
 * once it polls, talking to the apiserver with its ServiceAccount's in-cluster credentials, and serving executions,
 * also across its own graceful termination.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import { SandboxClient } from '../../client';
import { resourceNames } from '../../core/names';
import { localSides, PROJECT_ROOT, stackBinary, stackVersion, STACK_DIR } from '../../cli/local-stack';
import { settleOpenExecutions } from '../../worker/in-process';
import { auditCursor, readSince, type AuditCursor } from '../../scripts/bench/audit';
import { adminKube, eventually, leftoversAfterCompletion, NOTHING_LEFT, uniqueId, whenRunning } from '../helpers/stack';

jest.setTimeout(10 * 60_000);
const SYSTEM_NAMESPACE = 'durable-sandbox-system';
const DEPLOYMENT = 'durable-sandbox-worker';
const SELECTOR = 'app.kubernetes.io/name=durable-sandbox-worker';
const OVERLAY = path.join(PROJECT_ROOT, 'scripts/stack/manifests/worker');
const PLACEHOLDER = 'localhost/durable-sandbox/worker:built-by-images-sh';
const QUEUE = 'durable-sandbox-in-cluster';
const SERVICE_ACCOUNT = `system:serviceaccount:${SYSTEM_NAMESPACE}:durable-sandbox-worker`;

const kubectlBin = stackBinary('kubernetes', 'KUBERNETES_VERSION', 'kubectl');
const kubectl = (args: string[], input?: string): string =>
  execFileSync(kubectlBin, ['--kubeconfig', process.env.DS_ADMIN_KUBECONFIG!, ...args], {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
  });

const kube = adminKube();
let image: string;
let client: SandboxClient;
let audit: AuditCursor | undefined;

async function workerPods(): Promise<V1Pod[]> {
  const { items } = await kube.core.listNamespacedPod({ namespace: SYSTEM_NAMESPACE, labelSelector: SELECTOR });
  return items;
}
const ready = (p: V1Pod) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

async function scrape(): Promise<string> {
  const res = await fetch('http://127.0.0.1:9464/metrics');
  return res.text();
}
const counted = (text: string, status: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('durable_sandbox_executions_total{') && l.includes(`status="${status}"`))
    .reduce((a, l) => a + Number(l.split(/\s+/).pop()), 0);

beforeAll(async () => {
  const sides = localSides();
  if (!sides.kube || !sides.temporal)
    throw new Error('the in-cluster worker is built and networked for the local stack: it needs the local stack');
  const built = execFileSync('bash', [path.join(PROJECT_ROOT, 'scripts/stack/images.sh'), 'worker'], {
    encoding: 'utf8',
    env: { ...process.env, DS_STACK_DIR: STACK_DIR },
  });
  image = built.trim().split('\n').pop()!;
  expect(image).toMatch(/^localhost\/durable-sandbox\/worker:[0-9a-f]{12}$/);
  const manifests = kubectl(['kustomize', OVERLAY]);
  expect(manifests).toContain(PLACEHOLDER);
  audit = auditCursor(path.join(STACK_DIR, 'logs', 'audit.log'));
  kubectl(['apply', '-f', '-'], manifests.replaceAll(PLACEHOLDER, image));
  kubectl(['-n', SYSTEM_NAMESPACE, 'rollout', 'status', `deployment/${DEPLOYMENT}`, '--timeout=240s']);
  client = await SandboxClient.connect({ taskQueue: QUEUE });
});

afterAll(async () => {
  // The Deployment's worker sees what the tests started through to the end before it goes.
  if (client) await settleOpenExecutions(client, QUEUE);
  await client?.close();
  try {
    kubectl(['-n', SYSTEM_NAMESPACE, 'delete', 'deployment', DEPLOYMENT, '--wait=true', '--timeout=120s']);
    kubectl(['-n', SYSTEM_NAMESPACE, 'wait', '--for=delete', 'pod', '-l', SELECTOR, '--timeout=120s']);
  } catch {
    // already gone
  }
});

test('the Deployment runs one hardened, ready worker pod from the locally built image, with no kubeconfig', async () => {
  const pods = (await workerPods()).filter((p) => !p.metadata?.deletionTimestamp);
  expect(pods).toHaveLength(1);
  const [pod] = pods;
  expect(ready(pod)).toBe(true);
  expect(pod.spec!.serviceAccountName).toBe('durable-sandbox-worker');
  expect(pod.spec!.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 1000 });
  const c = pod.spec!.containers[0];
  expect(c.image).toBe(image);
  expect(c.securityContext).toMatchObject({
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
  });
  expect(c.readinessProbe?.httpGet?.path).toBe('/readyz');
  expect(c.livenessProbe?.httpGet?.path).toBe('/healthz');
  expect(c.env?.map((e) => e.name)).not.toContain('KUBECONFIG');
  // The worker's drain fits in the pod's grace period.
  const grace = Number(c.env!.find((e) => e.name === 'DS_SHUTDOWN_GRACE_SECONDS')!.value);
  expect(grace).toBeLessThan(pod.spec!.terminationGracePeriodSeconds!);
  // The overlay names the sandbox image the local stack builds.
  expect(c.env!.find((e) => e.name === 'DS_IMAGE')!.value).toBe(stackVersion('PYTHON_IMAGE'));
  expect(c.env!.find((e) => e.name === 'DS_IMAGE_JAVASCRIPT')!.value).toBe(stackVersion('NODE_IMAGE'));
  // Its probes answer (the pod shares the node's network).
  expect((await fetch('http://127.0.0.1:8080/readyz')).status).toBe(200);
  expect(await (await fetch('http://127.0.0.1:8080/healthz')).text()).toBe('ok\n');
});

test('it serves executions, making their Job and ConfigMap as its ServiceAccount; its metrics count them', async () => {
  const executionId = uniqueId('in-cluster');
  const before = counted(await scrape(), 'succeeded');
  const result = await client.executeCode({ code: 'print(6 * 7)' }, { executionId });
  expect(result).toMatchObject({ status: 'succeeded', exitCode: 0 });
  expect(result.stdout).toBe('42\n');
  expect(await leftoversAfterCompletion(kube, client, executionId)).toEqual(NOTHING_LEFT);
  const { name } = resourceNames(executionId, 1);
  const creates = readSince(audit!).filter(
    (e) => e.verb === 'create' && e.objectRef?.name === name && e.stage === 'ResponseComplete',
  );
  expect(creates.map((e) => e.objectRef!.resource).sort()).toEqual(['configmaps', 'jobs']);
  for (const e of creates) expect(e.user?.username).toBe(SERVICE_ACCOUNT);
  await eventually(scrape, (t) => counted(t, 'succeeded') === before + 1, 30_000);
});

test('deleting the worker pod mid-run drains it: the running execution finishes, and a new pod takes over', async () => {
  const executionId = uniqueId('in-cluster-drain');
  const [before] = (await workerPods()).filter((p) => !p.metadata?.deletionTimestamp);
  const pending = client.executeCode({ code: 'import time\ntime.sleep(15)\nprint("drained")' }, { executionId });
  await whenRunning(kube, executionId);
  // SIGTERM: the worker stops polling and gives the running step its grace to finish.
  await kube.core.deleteNamespacedPod({ name: before.metadata!.name!, namespace: SYSTEM_NAMESPACE });
  const result = await pending;
  expect(result).toMatchObject({ status: 'succeeded', stdout: 'drained\n' });
  // The run step finished on the pod being terminated, in its first try: drained, not retried elsewhere.
  const { events } = await client.temporal.workflow.getHandle(executionId).fetchHistory();
  const scheduled = events!.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'runSandbox')!;
  const started = events!.find(
    (e) => e.activityTaskStartedEventAttributes?.scheduledEventId?.toString() === scheduled.eventId!.toString(),
  )!;
  const completed = events!.find(
    (e) => e.activityTaskCompletedEventAttributes?.scheduledEventId?.toString() === scheduled.eventId!.toString(),
  )!;
  expect(started.activityTaskStartedEventAttributes!.attempt).toBe(1);
  expect(completed.activityTaskCompletedEventAttributes!.identity).toBe(before.metadata!.name);
  const after = await eventually(
    workerPods,
    (ps) => ps.length === 1 && ps[0].metadata!.name !== before.metadata!.name && ready(ps[0]),
    180_000,
  );
  expect(after[0].metadata!.name).not.toBe(before.metadata!.name);
  // The new pod serves the next one.
  expect(await client.executeCode({ code: 'print("next")' })).toMatchObject({ status: 'succeeded', stdout: 'next\n' });
  expect(await leftoversAfterCompletion(kube, client, executionId)).toEqual(NOTHING_LEFT);
});

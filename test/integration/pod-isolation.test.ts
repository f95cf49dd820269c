/**
 * Sandboxes cannot reach each other: one execution listens on a TCP port, another, running at the same time,
 * tries to connect to it by pod IP and fails. (On GKE the deny-all NetworkPolicy does this; on the local stack a
 * FORWARD rule on the pod bridge does, since its CNI enforces no NetworkPolicy.)
 */
import {
  adminKube,
  eventually,
  leftovers,
  NOTHING_LEFT,
  SANDBOX_NAMESPACE,
  startWorker,
  uniqueId,
  whenRunning,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(180_000);
const kube = adminKube();
let w: TestWorker;
beforeAll(async () => {
  w = await startWorker();
});
afterAll(async () => w?.stop());

const LISTENER = `
import socket, time
s = socket.socket()
s.bind(("0.0.0.0", 8080))
s.listen(5)
s.settimeout(60)
print("listening", flush=True)
try:
    conn, peer = s.accept()
    print("accepted", peer, flush=True)
except socket.timeout:
    print("nobody came", flush=True)
`;

test('a sandbox cannot connect to another sandbox', async () => {
  const listenerId = uniqueId('listener');
  const listener = await w.client.startExecution({ code: LISTENER, timeoutSeconds: 120 }, { executionId: listenerId });
  const podName = await whenRunning(kube, listenerId);
  const pod = await eventually(
    () => kube.core.readNamespacedPod({ name: podName, namespace: SANDBOX_NAMESPACE }),
    (p) => !!p.status?.podIP,
  );
  const ip = pod.status!.podIP!;
  const probe = await w.client.executeCode({
    code: `import socket\ns = socket.socket()\ns.settimeout(5)\ntry:\n    s.connect(("${ip}", 8080))\n    print("connected")\nexcept OSError as e:\n    print("refused:", type(e).__name__)\n`,
    timeoutSeconds: 30,
  });
  expect(probe.status).toBe('succeeded');
  expect(probe.stdout).toMatch(/^refused: /);
  await w.client.cancelExecution(listenerId);
  const r = await listener.result();
  expect(r.status).toBe('cancelled');
  expect(r.stdout).toBe('listening\n');
  expect(await leftovers(kube, listenerId)).toEqual(NOTHING_LEFT);
});

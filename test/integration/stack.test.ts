/**
 * The local stack is real: a gVisor pod runs Python on the kubelet and cannot reach the node, and Temporal keeps
 * its workflows across a restart of the dev server.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { V1Job } from '@kubernetes/client-node';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { PROJECT_ROOT, STACK_DIR, localSides } from '../../cli/local-stack';
import { adminKube, eventually, SANDBOX_NAMESPACE, uniqueId } from '../helpers/stack';

jest.setTimeout(180_000);
const kube = adminKube();

const PROBE = `
import os, socket, sys
print(6 * 7)
print("kernel", os.uname().release)
def probe(host, port):
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        return "open"
    except OSError as e:
        return "closed:" + type(e).__name__
for name, host, port in [("node", sys.argv[1], 6443), ("service", "10.96.0.1", 443)]:
    print("reach", name, probe(host, port))
`;

function probeJob(name: string, nodeIp: string): V1Job {
  return {
    metadata: { name, labels: { 'durable-sandbox.dev/test': 'stack' } },
    spec: {
      backoffLimit: 0,
      ttlSecondsAfterFinished: 60,
      template: {
        spec: {
          restartPolicy: 'Never',
          runtimeClassName: 'gvisor',
          automountServiceAccountToken: false,
          securityContext: { runAsNonRoot: true, runAsUser: 1001, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'probe',
              image: process.env.DS_IMAGE ?? 'python:3.12-slim',
              imagePullPolicy: 'IfNotPresent',
              command: ['python3', '-c', PROBE, nodeIp],
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
  };
}

describe('Kubernetes', () => {
  test('a gVisor Job runs python3 -c "print(6*7)" and its sandbox cannot reach the node', async () => {
    const node = (await kube.core.listNode()).items[0];
    const nodeIp = node.status!.addresses!.find((a) => a.type === 'InternalIP')!.address;
    const name = uniqueId('stack-probe');
    await kube.batch.createNamespacedJob({ namespace: SANDBOX_NAMESPACE, body: probeJob(name, nodeIp) });
    try {
      const job = await eventually(
        () => kube.batch.readNamespacedJob({ name, namespace: SANDBOX_NAMESPACE }),
        (j) => (j.status?.succeeded ?? 0) > 0 || (j.status?.failed ?? 0) > 0,
        120_000,
      );
      expect(job.status?.succeeded).toBe(1);
      const pods = await kube.core.listNamespacedPod({
        namespace: SANDBOX_NAMESPACE,
        labelSelector: `job-name=${name}`,
      });
      const pod = pods.items[0];
      expect(pod.spec?.runtimeClassName).toBe('gvisor');
      const log = await kube.core.readNamespacedPodLog({ name: pod.metadata!.name!, namespace: SANDBOX_NAMESPACE });
      const lines = log.trim().split('\n');
      expect(lines[0]).toBe('42');
      // gVisor reports its own kernel version, not the node's.
      const kernel = lines.find((l) => l.startsWith('kernel '))!.slice('kernel '.length);
      expect(kernel).not.toBe(os.release());
      const reach = lines.filter((x) => x.startsWith('reach '));
      expect(reach).toHaveLength(2);
      for (const l of reach) expect(l).toMatch(/^reach (node|service) closed:/);
    } finally {
      await kube.batch.deleteNamespacedJob({ name, namespace: SANDBOX_NAMESPACE, propagationPolicy: 'Background' });
    }
  });
});

describe('Temporal dev server', () => {
  test('keeps a completed workflow across a restart of the dev server', async () => {
    if (!localSides().temporal) throw new Error('this test restarts the local dev server: unset TEMPORAL_ADDRESS');
    const address = process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';
    const taskQueue = uniqueId('ping');
    const workflowId = uniqueId('ping-wf');
    const nativeConnection = await NativeConnection.connect({ address });
    const worker = await Worker.create({
      connection: nativeConnection,
      taskQueue,
      workflowsPath: path.join(__dirname, '..', 'workflows', 'ping.ts'),
    });
    let connection = await Connection.connect({ address });
    const result = await worker.runUntil(
      new Client({ connection }).workflow.execute('ping', { taskQueue, workflowId, args: ['stack'] }),
    );
    expect(result).toBe('pong stack');
    await connection.close();
    await nativeConnection.close();

    const pid = Number(readFileSync(path.join(STACK_DIR, 'pids', 'temporal.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    // Gone, or a zombie nobody has reaped yet (PID 1 on this machine does not reap).
    const dead = async () => {
      try {
        return /\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return true;
      }
    };
    await eventually(dead, (gone) => gone, 10_000);
    execFileSync('bash', [path.join(PROJECT_ROOT, 'scripts', 'stack', 'up.sh')], { stdio: 'pipe', timeout: 120_000 });
    const newPid = Number(readFileSync(path.join(STACK_DIR, 'pids', 'temporal.pid'), 'utf8'));
    expect(newPid).not.toBe(pid);

    connection = await Connection.connect({ address });
    const client = new Client({ connection });
    const description = await client.workflow.getHandle(workflowId).describe();
    expect(description.status.name).toBe('COMPLETED');
    const listed = [];
    for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) listed.push(wf.workflowId);
    expect(listed).toEqual([workflowId]);
    await connection.close();
  });
});

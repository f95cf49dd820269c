/**
 * Durable cancellation: a cancel that reaches a worker which then dies still ends with the pod gone and a
 * `cancelled` result, because the cancel is in the workflow's history and cleanup is an activity that another
 * (here: the restarted) worker runs.
 */
import { SandboxClient } from '../../client';
import { adminKube, killableWorker, leftovers, NOTHING_LEFT, uniqueId, whenRunning } from '../helpers/stack';

jest.setTimeout(180_000);

test('cancel, then SIGKILL the worker: the pod still goes and the result is cancelled', async () => {
  const kube = adminKube();
  const { taskQueue, config, supervisor } = killableWorker('durable-cancel');
  const client = await SandboxClient.connect({
    connection: { address: config.temporal.address },
    taskQueue,
    policy: config.policy,
  });
  try {
    const executionId = uniqueId('cancel-kill');
    const handle = await client.startExecution(
      { code: 'import time\nprint("working", flush=True)\ntime.sleep(600)', timeoutSeconds: 300 },
      { executionId },
    );
    const pod = await whenRunning(kube, executionId, 1, 90_000);
    await client.cancelExecution(executionId);
    expect(supervisor.kill()).toBe(true);
    const r = await handle.result();
    expect(r.status).toBe('cancelled');
    expect(r.exitCode).toBeNull();
    expect(r.kubernetes.job).toBe(pod.replace(/-[a-z0-9]{5}$/, ''));
    expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
    expect(supervisor.restarts).toBeGreaterThanOrEqual(1);
  } finally {
    await client.close();
    await supervisor.stop();
  }
});

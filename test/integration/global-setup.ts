/**
 * Integration tests need the real stack. If it cannot be reached the whole run fails here, with the fix, rather
 * than any test being skipped.
 */
import { Connection } from '@temporalio/client';
import { CoreV1Api } from '@kubernetes/client-node';
import { loadKubeConfig } from '../../worker/connect';
import { applyStackEnv, localSides } from '../../cli/local-stack';

/** When the run began (RFC 3339), for the teardown's check that no workflow the tests started is left open. */
export const RUN_STARTED_ENV = 'DS_TEST_RUN_STARTED';

export default async function globalSetup(): Promise<void> {
  process.env[RUN_STARTED_ENV] ??= new Date().toISOString();
  const sides = localSides();
  applyStackEnv();
  const hint =
    'start the local stack with `npm run stack:up`, or set KUBECONFIG and TEMPORAL_ADDRESS to a real cluster';
  const address = process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';
  try {
    const connection = await Connection.connect({ address, connectTimeout: '5s' });
    await connection.workflowService.getSystemInfo({});
    await connection.close();
  } catch (err) {
    throw new Error(
      `Temporal at ${address}${sides.temporal ? ' (local stack)' : ''} is not reachable: ${String(err)}; ${hint}`,
      { cause: err },
    );
  }
  const kubeconfig = process.env.DS_ADMIN_KUBECONFIG ?? process.env.KUBECONFIG;
  try {
    const core = loadKubeConfig(kubeconfig).makeApiClient(CoreV1Api);
    const nodes = await core.listNode();
    const ready = nodes.items.filter((n) =>
      n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
    );
    if (ready.length === 0) throw new Error('no node is Ready');
  } catch (err) {
    throw new Error(`Kubernetes (${kubeconfig ?? 'default kubeconfig'}) is not usable: ${String(err)}; ${hint}`, {
      cause: err,
    });
  }
}

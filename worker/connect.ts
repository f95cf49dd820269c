/** Connections to Kubernetes and Temporal from a worker configuration. */
import { KubeConfig } from '@kubernetes/client-node';
import { NativeConnection } from '@temporalio/worker';
import { connectClient, connectionOptions, TemporalConnectionError, type TemporalSettings } from '../client/connection';

/** A kubeconfig file when one is named, else in-cluster credentials, else the user's default kubeconfig. */
export function loadKubeConfig(kubeconfig: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster())
    throw new Error(`no Kubernetes cluster configured (kubeconfig: ${kubeconfig ?? 'default'})`);
  return kc;
}

/** The worker's own connection (polling for tasks). */
export async function connectTemporal(t: TemporalSettings): Promise<NativeConnection> {
  try {
    return await NativeConnection.connect(await connectionOptions(t));
  } catch (err) {
    throw new TemporalConnectionError(
      t.address,
      t.namespace,
      'unreachable',
      err instanceof Error ? err.message : String(err),
    );
  }
}

/** A client connection, for the reconciler's questions to Temporal, its Schedule and the pools' workflows. */
export const connectTemporalClient = connectClient;

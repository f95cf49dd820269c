/** Connections to Kubernetes and Temporal from a worker configuration. */
import { readFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';
import { Client, Connection, type ConnectionOptions } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { WorkerConfig } from './config';

/** A kubeconfig file when one is named, else in-cluster credentials, else the user's default kubeconfig. */
export function loadKubeConfig(kubeconfig: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) throw new Error(`no Kubernetes cluster configured (kubeconfig: ${kubeconfig ?? 'default'})`);
  return kc;
}

async function connectionOptions(t: WorkerConfig['temporal']) {
  const mtls =
    t.tlsCertPath && t.tlsKeyPath
      ? { clientCertPair: { crt: await readFile(t.tlsCertPath), key: await readFile(t.tlsKeyPath) } }
      : undefined;
  return {
    address: t.address,
    ...(mtls ? { tls: mtls } : t.apiKey ? { tls: true } : {}),
    ...(t.apiKey ? { apiKey: t.apiKey } : {}),
  };
}

/** The worker's own connection (polling for tasks). */
export async function connectTemporal(t: WorkerConfig['temporal']): Promise<NativeConnection> {
  return NativeConnection.connect(await connectionOptions(t));
}

/** A client connection, for the reconciler's questions to Temporal and for the reconciler's Schedule. */
export async function connectTemporalClient(t: WorkerConfig['temporal']): Promise<Client> {
  const connection = await Connection.connect((await connectionOptions(t)) as ConnectionOptions);
  return new Client({ connection, namespace: t.namespace });
}

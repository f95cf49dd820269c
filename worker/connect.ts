/** Connections to Kubernetes and Temporal from a worker configuration. */
import { readFile } from 'node:fs/promises';
import { KubeConfig } from '@kubernetes/client-node';
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

export async function connectTemporal(t: WorkerConfig['temporal']): Promise<NativeConnection> {
  const mtls =
    t.tlsCertPath && t.tlsKeyPath
      ? { clientCertPair: { crt: await readFile(t.tlsCertPath), key: await readFile(t.tlsKeyPath) } }
      : undefined;
  return NativeConnection.connect({
    address: t.address,
    ...(mtls ? { tls: mtls } : t.apiKey ? { tls: true } : {}),
    ...(t.apiKey ? { apiKey: t.apiKey } : {}),
  });
}

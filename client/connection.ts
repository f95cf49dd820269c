/**
 * The one place that turns Temporal settings (address, namespace, TLS or API key) into a connection: the worker, the
 * client, the CLI and the tests all connect through it. Failures are typed and name the address and namespace.
 */
import { readFile } from 'node:fs/promises';
import { Client, Connection, type ClientInterceptors, type ConnectionOptions } from '@temporalio/client';

export interface TemporalSettings {
  address: string;
  namespace: string;
  /** mTLS client certificate and key (PEM file paths), for Temporal Cloud or a TLS-enabled server. */
  tlsCertPath?: string;
  tlsKeyPath?: string;
  /** API key auth (Temporal Cloud); implies TLS. */
  apiKey?: string;
}

/** TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS_CERT + TEMPORAL_TLS_KEY or TEMPORAL_API_KEY. */
export function temporalSettingsFromEnv(env: Record<string, string | undefined> = process.env): TemporalSettings {
  return {
    address: env.TEMPORAL_ADDRESS || '127.0.0.1:7233',
    namespace: env.TEMPORAL_NAMESPACE || 'default',
    tlsCertPath: env.TEMPORAL_TLS_CERT || undefined,
    tlsKeyPath: env.TEMPORAL_TLS_KEY || undefined,
    apiKey: env.TEMPORAL_API_KEY || undefined,
  };
}

/** Temporal could not be reached, or does not have the namespace. */
export class TemporalConnectionError extends Error {
  override readonly name = 'TemporalConnectionError';
  constructor(
    readonly address: string,
    readonly namespace: string,
    readonly reason: 'unreachable' | 'namespace-not-found' | 'unauthorized',
    detail: string,
  ) {
    const what =
      reason === 'namespace-not-found'
        ? `Temporal at ${address} has no namespace "${namespace}"`
        : reason === 'unauthorized'
          ? `Temporal at ${address} refused the credentials for namespace "${namespace}"`
          : `Temporal at ${address} (namespace "${namespace}") is not reachable`;
    super(`${what}: ${detail}`);
  }
}

/** What Connection.connect (client) and NativeConnection.connect (worker) both take. */
export interface ConnectionSettings {
  address: string;
  tls?: true | { clientCertPair: { crt: Buffer; key: Buffer } };
  apiKey?: string;
}

export async function connectionOptions(s: TemporalSettings): Promise<ConnectionSettings> {
  const mtls =
    s.tlsCertPath && s.tlsKeyPath
      ? { clientCertPair: { crt: await readFile(s.tlsCertPath), key: await readFile(s.tlsKeyPath) } }
      : undefined;
  return {
    address: s.address,
    ...(mtls ? { tls: mtls } : s.apiKey ? { tls: true } : {}),
    ...(s.apiKey ? { apiKey: s.apiKey } : {}),
  };
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** A client connection; checks that the namespace exists, so a wrong one fails here, typed, not on first use. */
export async function connectClient(
  s: TemporalSettings,
  connectTimeout: ConnectionOptions['connectTimeout'] = '10s',
  interceptors?: ClientInterceptors,
): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...(await connectionOptions(s)), connectTimeout });
  } catch (err) {
    throw new TemporalConnectionError(s.address, s.namespace, 'unreachable', message(err));
  }
  try {
    await connection.workflowService.describeNamespace({ namespace: s.namespace });
  } catch (err) {
    await connection.close().catch(() => undefined);
    const code = (err as { code?: number }).code;
    // gRPC NOT_FOUND (5), UNAUTHENTICATED (16), PERMISSION_DENIED (7).
    if (code === 5) throw new TemporalConnectionError(s.address, s.namespace, 'namespace-not-found', message(err));
    if (code === 16 || code === 7)
      throw new TemporalConnectionError(s.address, s.namespace, 'unauthorized', message(err));
    throw new TemporalConnectionError(s.address, s.namespace, 'unreachable', message(err));
  }
  return new Client({ connection, namespace: s.namespace, ...(interceptors ? { interceptors } : {}) });
}

import { EGRESS_DEFAULTS } from '../../core/egress';
import { DEFAULT_POLICY } from '../../core/policy';
import { ConfigError, loadConfig } from '../../worker/config';

test('defaults need no environment at all', () => {
  const c = loadConfig({});
  // The worker knows its egress ceiling (none by default); a client's default policy leaves it to the worker.
  expect(c.policy).toEqual({
    ...DEFAULT_POLICY,
    egress: { allow: [], maxBytes: EGRESS_DEFAULTS.maxBytes, maxConnections: EGRESS_DEFAULTS.maxConnections },
  });
  expect(c.egress).toBeUndefined();
  expect(c.temporal).toEqual({ address: '127.0.0.1:7233', namespace: 'default', taskQueue: 'durable-sandbox' });
  expect(c.kubeconfig).toBeUndefined();
});

test('reads every knob', () => {
  const c = loadConfig({
    TEMPORAL_ADDRESS: 'ns.tmprl.cloud:7233',
    TEMPORAL_NAMESPACE: 'ns',
    TEMPORAL_API_KEY: 'k',
    DS_TASK_QUEUE: 'q',
    KUBECONFIG: '/kc',
    DS_SANDBOX_NAMESPACE: 'sbx',
    DS_IMAGE: 'img:1',
    DS_IMAGE_BASH: 'bash:1',
    DS_IMAGE_JAVASCRIPT: 'node:1',
    DS_WARM_POOL_SIZE: '3',
    DS_WARM_POOL_SIZE_JAVASCRIPT: '1',
    DS_DEFAULT_TIMEOUT_SECONDS: '10',
    DS_MAX_TIMEOUT_SECONDS: '20',
    DS_STDOUT_CAP_BYTES: '1000',
    DS_RUNTIME_CLASS: '',
    DS_SEARCH_ATTRIBUTES: 'off',
    DS_MAX_INFRA_ATTEMPTS: '1',
    DS_QUEUE_TIMEOUT_SECONDS: '0',
  });
  expect(c.temporal).toMatchObject({ address: 'ns.tmprl.cloud:7233', namespace: 'ns', apiKey: 'k', taskQueue: 'q' });
  expect(c.kubeconfig).toBe('/kc');
  expect(c.pool).toMatchObject({ size: 3, sizes: { python: 3, bash: 3, javascript: 1 } });
  expect(c.policy).toMatchObject({
    namespace: 'sbx',
    images: { python: 'img:1', bash: 'bash:1', javascript: 'node:1' },
    defaultTimeoutSeconds: 10,
    maxTimeoutSeconds: 20,
    stdoutCapBytes: 1000,
    runtimeClassName: '',
    searchAttributes: false,
    maxInfraAttempts: 1,
    queueTimeoutSeconds: 0,
  });
});

test.each([
  [{ DS_MAX_TIMEOUT_SECONDS: 'ten' }, /DS_MAX_TIMEOUT_SECONDS=ten: must be a whole number/],
  [{ DS_DEFAULT_CPU: 'fast' }, /DS_DEFAULT_CPU=fast: not a Kubernetes quantity/],
  [{ DS_STDOUT_CAP_BYTES: '200000', DS_STDERR_CAP_BYTES: '200000' }, /at most 262144 together/],
  [{ DS_DEFAULT_TIMEOUT_SECONDS: '100', DS_MAX_TIMEOUT_SECONDS: '50' }, /above DS_MAX_TIMEOUT_SECONDS/],
  [{ DS_SEARCH_ATTRIBUTES: 'maybe' }, /must be on or off/],
  [{ DS_LOG_LEVEL: 'LOUD' }, /DS_LOG_LEVEL=LOUD/],
  [{ DS_QUEUE_TIMEOUT_SECONDS: '-5' }, /DS_QUEUE_TIMEOUT_SECONDS=-5/],
  [{ DS_WORKSPACE_STORE: 'gs://bucket' }, /DS_WORKSPACE_STORE=gs:\/\/bucket: .*s3:\/\/bucket/],
  [{ DS_WORKSPACE_STORE: 's3://b1b', DS_WORKSPACE_S3_ENDPOINT: 'storage.googleapis.com' }, /an http\(s\) URL/],
  [{ DS_WORKSPACE_STORE: 's3://b1b', DS_WORKSPACE_S3_ACCESS_KEY_ID: 'k' }, /go together/],
  [{ DS_WORKSPACE_STORE: 's3://b1b', DS_WORKSPACE_MAX_BYTES: '1' }, /DS_WORKSPACE_MAX_BYTES=1: must be a whole number/],
])('rejects %j', (env, message) => {
  expect(() => loadConfig(env)).toThrow(ConfigError);
  expect(() => loadConfig(env)).toThrow(message);
});

test('a workspace store: where, how to reach it, and the largest workspace it keeps', () => {
  expect(loadConfig({}).workspaceStore).toBeUndefined();
  const c = loadConfig({
    DS_WORKSPACE_STORE: 's3://ds-workspaces/prod',
    DS_WORKSPACE_S3_ENDPOINT: 'https://storage.googleapis.com',
    DS_WORKSPACE_S3_REGION: 'auto',
    DS_WORKSPACE_S3_ACCESS_KEY_ID: 'GOOG1E',
    DS_WORKSPACE_S3_SECRET_ACCESS_KEY: 's',
  });
  expect(c.workspaceStore).toEqual({
    bucket: 'ds-workspaces',
    prefix: 'prod/',
    endpoint: 'https://storage.googleapis.com',
    region: 'auto',
    accessKeyId: 'GOOG1E',
    secretAccessKey: 's',
  });
  expect(c.policy.workspaceMaxBytes).toBe(64 * 1024 * 1024);
  expect(
    loadConfig({ DS_WORKSPACE_STORE: 's3://b1b', DS_WORKSPACE_MAX_BYTES: '1048576' }).policy.workspaceMaxBytes,
  ).toBe(1048576);
});

test('egress: the ceiling, the gateway and its key; a ceiling without a gateway is refused', () => {
  const gateway = {
    DS_EGRESS_GATEWAY: '10.88.0.1:3128',
    DS_EGRESS_REPORT: 'http://127.0.0.1:3129',
    DS_EGRESS_KEY: 'k'.repeat(32),
  };
  const c = loadConfig({
    ...gateway,
    DS_EGRESS_ALLOW: 'data.example.org, *.example.net:8443,443',
    DS_EGRESS_MAX_BYTES: '1048576',
  });
  expect(c.policy.egress).toEqual({
    allow: [
      { host: 'data.example.org', ports: [443, 80] },
      { host: '*.example.net', ports: [8443, 443] },
    ],
    maxBytes: 1048576,
    maxConnections: EGRESS_DEFAULTS.maxConnections,
  });
  expect(c.egress).toEqual({ gateway: '10.88.0.1:3128', report: 'http://127.0.0.1:3129', key: 'k'.repeat(32) });
  expect(() => loadConfig({ DS_EGRESS_ALLOW: 'data.example.org' })).toThrow(/DS_EGRESS_ALLOW needs DS_EGRESS_GATEWAY/);
  expect(() => loadConfig({ ...gateway, DS_EGRESS_ALLOW: '10.0.0.1' })).toThrow(
    /DS_EGRESS_ALLOW: "10.0.0.1" is an IP address/,
  );
  expect(() => loadConfig({ DS_EGRESS_GATEWAY: '10.88.0.1:3128' })).toThrow(/DS_EGRESS_REPORT/);
});

import type { Server } from 'node:http';
import type { State } from '@temporalio/worker';
import { readiness, serveHealth } from '../../worker/health';
import { ConfigError, loadConfig } from '../../worker/config';

let server: Server;
let state: State = 'INITIALIZED';
let problem: string | undefined;
let base: string;

beforeAll(async () => {
  server = await serveHealth(
    '127.0.0.1:0',
    () => state,
    () => problem,
  );
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(() => server.close());

const get = async (p: string) => {
  const res = await fetch(base + p);
  return [res.status, (await res.text()).trim()];
};

test('/readyz is 200 only while the worker polls; /healthz is 200 throughout; anything else is 404', async () => {
  const seen: unknown[] = [];
  for (const s of ['INITIALIZED', 'RUNNING', 'DRAINING', 'STOPPING', 'STOPPED'] as State[]) {
    state = s;
    seen.push([s, await get('/readyz'), await get('/healthz')]);
  }
  expect(seen).toEqual([
    ['INITIALIZED', [503, 'INITIALIZED'], [200, 'ok']],
    ['RUNNING', [200, 'RUNNING'], [200, 'ok']],
    ['DRAINING', [503, 'DRAINING'], [200, 'ok']],
    ['STOPPING', [503, 'STOPPING'], [200, 'ok']],
    ['STOPPED', [503, 'STOPPED'], [200, 'ok']],
  ]);
  expect(await get('/metrics')).toEqual([404, 'not found']);
});

test('/readyz is 503 with the reason while the worker cannot reach what it needs; /healthz stays 200', async () => {
  state = 'RUNNING';
  problem = 'Kubernetes API at https://10.0.0.1:443 is not reachable: no answer within 5 s';
  try {
    expect(await get('/readyz')).toEqual([503, problem]);
    expect(await get('/healthz')).toEqual([200, 'ok']);
    // A worker that is not polling says so first: that is why it is not ready.
    state = 'DRAINING';
    expect(await get('/readyz')).toEqual([503, 'DRAINING']);
    state = 'RUNNING';
    problem = undefined;
    expect(await get('/readyz')).toEqual([200, 'RUNNING']);
  } finally {
    problem = undefined;
  }
});

test('readiness: RUNNING and no problem is the only 200', () => {
  expect(readiness('RUNNING', undefined)).toEqual([200, 'RUNNING']);
  expect(readiness('RUNNING', 'x')).toEqual([503, 'x']);
  expect(readiness('INITIALIZED', 'x')).toEqual([503, 'INITIALIZED']);
});

test('the probe address, the drain and the identity are read and checked', () => {
  expect(loadConfig({})).toMatchObject({ shutdownGraceSeconds: 10 });
  expect(loadConfig({}).healthAddress).toBeUndefined();
  expect(
    loadConfig({ DS_HEALTH_ADDRESS: '0.0.0.0:8080', DS_SHUTDOWN_GRACE_SECONDS: '45', DS_WORKER_IDENTITY: 'pod-a' }),
  ).toMatchObject({ healthAddress: '0.0.0.0:8080', shutdownGraceSeconds: 45, identity: 'pod-a' });
  expect(() => loadConfig({ DS_HEALTH_ADDRESS: '8080' })).toThrow(ConfigError);
  expect(() => loadConfig({ DS_HEALTH_ADDRESS: '8080' })).toThrow(/DS_HEALTH_ADDRESS=8080: host:port/);
  expect(() => loadConfig({ DS_SHUTDOWN_GRACE_SECONDS: '-1' })).toThrow(/DS_SHUTDOWN_GRACE_SECONDS=-1/);
});

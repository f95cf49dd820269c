/**
 * The log follow against a local HTTP server standing in for the apiserver: pieces arrive as written, an aborted
 * stream stops reaching the callback at once, and its connection, once the server ends the stream (as it does when
 * the container exits), goes back to the worker's keep-alive pool instead of being cut.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { createKube, type Kube } from '../../activities/kube';
import { openLogStream } from '../../activities/log-stream';

let server: http.Server;
let kube: Kube;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('o first\n');
    // The rest comes a moment later, then the stream ends (the container exited).
    setTimeout(() => res.end('o second\nx {}\n'), 150);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      { name: 'local', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true },
    ],
    users: [{ name: 'u' }],
    contexts: [{ name: 'c', cluster: 'local', user: 'u' }],
    currentContext: 'c',
  });
  kube = createKube(kc, { shared: true });
});
afterAll(async () => {
  kube.close();
  await new Promise((r) => server.close(r));
});

const options = { namespace: 'ns', pod: 'p', container: 'sandbox', limitBytes: 1024, follow: true };

test('pieces arrive as written, and the stream reports its end', async () => {
  const got: string[] = [];
  const stream = await openLogStream(kube, options, (b) => got.push(b.toString()));
  expect(await stream.done).toBe('end');
  expect(got.join('')).toBe('o first\no second\nx {}\n');
});

test('an aborted stream hands nothing more over, and its connection is kept for the next request', async () => {
  const before = kube.connections!();
  const got: string[] = [];
  const first = await openLogStream(kube, options, (b) => got.push(b.toString()));
  await sleep(50);
  first.abort();
  expect(await first.done).toBe('end');
  expect(got.join('')).toBe('o first\n');
  const second = await openLogStream(kube, options, () => undefined);
  expect(await second.done).toBe('end');
  // The first request's connection served the second: one connection in all (none if the first test's was reused).
  expect(kube.connections!() - before).toBeLessThanOrEqual(1);
});

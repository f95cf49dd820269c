/**
 * Probes for Kubernetes: `/healthz` answers 200 while the process serves at all; `/readyz` answers 200 only while the
 * worker is polling for tasks (state RUNNING) and 503 before (bundling, connecting) and once it drains.
 */
import { createServer, type Server } from 'node:http';
import type { State } from '@temporalio/worker';

export async function serveHealth(address: string, state: () => State): Promise<Server> {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(at + 1));
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const now = state();
    const [code, body] =
      path === '/healthz'
        ? [200, 'ok']
        : path === '/readyz'
          ? [now === 'RUNNING' ? 200 : 503, now]
          : [404, 'not found'];
    res.writeHead(code, { 'content-type': 'text/plain' }).end(`${body}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return server;
}

/**
 * Probes for Kubernetes: `/healthz` answers 200 while the process serves at all; `/readyz` answers 200 only while the
 * worker is polling for tasks (state RUNNING) and can reach what it needs, and 503 before (bundling, connecting),
 * once it drains, and while `problem` names something missing (e.g. the Kubernetes API not answering), with the
 * state or the problem as the body.
 */
import { createServer, type Server } from 'node:http';
import type { State } from '@temporalio/worker';

/** The status and body of `/readyz`. */
export function readiness(state: State, problem: string | undefined): [number, string] {
  if (state !== 'RUNNING') return [503, state];
  return problem ? [503, problem] : [200, state];
}

export async function serveHealth(
  address: string,
  state: () => State,
  problem: () => string | undefined = () => undefined,
): Promise<Server> {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(at + 1));
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const [code, body] =
      path === '/healthz' ? [200, 'ok'] : path === '/readyz' ? readiness(state(), problem()) : [404, 'not found'];
    res.writeHead(code, { 'content-type': 'text/plain' }).end(`${body}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return server;
}

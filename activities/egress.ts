/**
 * A sandbox's network egress, on the worker's side: the credential and proxy settings it gets (computed from the
 * key the worker shares with the egress gateway, never recorded in a history), and what it reached and was refused,
 * read back from the gateway when its run ends, with a span per connection and the worker's metrics.
 */
import { createHmac } from 'node:crypto';
import { context, trace } from '@opentelemetry/api';
import { Context, log } from '@temporalio/activity';
import {
  attemptEgressId,
  formatEgressRule,
  proxyEnv,
  sandboxEgress,
  type EgressRule,
  type NetworkConnection,
  type NetworkReport,
} from '../core/egress';
import type { SandboxNetwork } from '../core/manifests';
import { EGRESS_METRICS } from '../core/metrics';
import type { ExecutionPolicy } from '../core/policy';
import type { ActivityDeps } from './deps';

/** Where the gateway is and the key the worker shares with it (worker/config.ts: DS_EGRESS_*). */
export interface EgressGateway {
  /** host:port the sandboxes reach the proxy on. */
  gateway: string;
  /** Base URL of the gateway's report endpoint. */
  report: string;
  key: string;
}

/** What the gateway checks a sandbox's credential against: an HMAC of its egress id (gateway/proxy.go Credential). */
export function egressCredential(key: string, id: string): string {
  return createHmac('sha256', key).update(`egress:${id}`).digest('hex');
}

/** A sandbox's egress for an allow-list: what its pod carries and its program gets. Undefined without rules. */
export function networkFor(
  deps: Pick<ActivityDeps, 'egress'>,
  id: string,
  rules: EgressRule[] | undefined,
  policy: ExecutionPolicy,
): SandboxNetwork | undefined {
  if (!rules?.length || !deps.egress) return undefined;
  const { gateway, key } = deps.egress;
  return {
    egress: sandboxEgress(id, rules, policy),
    env: proxyEnv(gateway, id, egressCredential(key, id)),
    proxy: gateway,
  };
}

/** An attempt's egress (its id is the execution's and the attempt's, so a retried step computes the same one). */
export function attemptNetwork(
  deps: Pick<ActivityDeps, 'egress'>,
  spec: { executionId: string; attempt: number; request: { egress?: EgressRule[] }; policy: ExecutionPolicy },
): SandboxNetwork | undefined {
  return networkFor(deps, attemptEgressId(spec.executionId, spec.attempt), spec.request.egress, spec.policy);
}

interface GatewayRecord extends NetworkConnection {
  allowed: boolean;
  endedAt?: number;
}

/**
 * What a sandbox reached and was refused since `since` (ms), from the gateway. A gateway that does not answer
 * gives a report that says so (the program's connections were refused too). Each connection becomes a span (under
 * the step's own) and counts in the worker's metrics.
 */
export async function networkReport(
  deps: Pick<ActivityDeps, 'egress'>,
  id: string,
  rules: EgressRule[],
  since: number,
): Promise<NetworkReport> {
  const allow = rules.map(formatEgressRule);
  if (!deps.egress) return { allow, reached: [], refused: [], error: 'this worker has no egress gateway' };
  const url = `${deps.egress.report.replace(/\/$/, '')}/v1/sandboxes/${encodeURIComponent(id)}/connections?since=${since}`;
  let body: { records?: GatewayRecord[]; dropped?: number };
  try {
    const res = await fetch(url, {
      headers: { Authorization: `Bearer ${egressCredential(deps.egress.key, 'report')}` },
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    body = (await res.json()) as typeof body;
  } catch (err) {
    const message = `the egress gateway could not be asked what the sandbox reached (${(err as Error).message}); a gateway that is down refuses every connection`;
    log.warn(message, { egressId: id });
    return { allow, reached: [], refused: [], error: message };
  }
  const reached: NetworkConnection[] = [];
  const refused: NetworkConnection[] = [];
  for (const r of body.records ?? []) {
    const c: NetworkConnection = {
      host: r.host,
      port: r.port,
      kind: r.kind,
      at: r.at,
      sent: r.sent,
      received: r.received,
      ...(r.reason ? { reason: r.reason } : {}),
      ...(r.open ? { open: true } : {}),
    };
    (r.allowed ? reached : refused).push(c);
    observe(c, r.allowed, r.endedAt);
  }
  return { allow, reached, refused, ...(body.dropped ? { dropped: body.dropped } : {}) };
}

/** A span for the connection (under the running step's) and the worker's counters. */
function observe(c: NetworkConnection, allowed: boolean, endedAt: number | undefined): void {
  const span = trace.getTracer('durable-sandbox').startSpan(
    `egress ${c.host}:${c.port}`,
    {
      startTime: c.at,
      attributes: {
        'server.address': c.host,
        'server.port': c.port,
        'durable_sandbox.egress.kind': c.kind,
        'durable_sandbox.egress.allowed': allowed,
        'durable_sandbox.egress.sent_bytes': c.sent,
        'durable_sandbox.egress.received_bytes': c.received,
        ...(c.reason ? { 'durable_sandbox.egress.reason': c.reason } : {}),
      },
    },
    context.active(),
  );
  span.end(endedAt ?? Date.now());
  try {
    const meter = Context.current().metricMeter;
    meter
      .createCounter(EGRESS_METRICS.connections.name, 'connections', EGRESS_METRICS.connections.help)
      .add(1, { outcome: allowed ? 'allowed' : 'refused' });
    meter
      .createCounter(EGRESS_METRICS.bytes.name, 'bytes', EGRESS_METRICS.bytes.help)
      .add(c.sent + c.received, { outcome: allowed ? 'allowed' : 'refused' });
  } catch {
    // outside an activity (a test): no metrics
  }
}

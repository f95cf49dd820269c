/**
 * Counts the Kubernetes API requests of each execution from the apiserver's audit log (JSON lines, Metadata level,
 * see scripts/stack/manifests/audit-policy.yaml). A request belongs to an execution when its object is the
 * execution's Job or ConfigMap (name = the resource name), its pod (name = Job name + '-' + suffix), or when it is
 * a list/watch whose labelSelector names the execution's label. Requests are counted once per auditID (watches and
 * log reads are logged at ResponseStarted and ResponseComplete). Pod creation by the Job controller is not
 * attributable (the pod's generated name is not in the audit event) and is left out on both sides. A warm run's
 * pool pod has a generated name too: the worker's requests on it (claim, attach, log, delete) are found by the pod
 * its result names; the cluster's requests on it (most of them made before the claim, while it was warming) are not
 * counted.
 */
import { closeSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import path from 'node:path';
import { resourceNames } from '../../core/names';

export interface AuditCursor {
  file: string;
  ino: number;
  offset: number;
}

interface AuditEvent {
  auditID: string;
  verb: string;
  requestURI: string;
  stage: string;
  user?: { username?: string };
  objectRef?: { resource?: string; subresource?: string; namespace?: string; name?: string };
}

/** Where the log ends now: events after this point are read by readSince. */
export function auditCursor(file: string): AuditCursor | undefined {
  try {
    const st = statSync(file);
    return { file, ino: st.ino, offset: st.size };
  } catch {
    return undefined;
  }
}

function readFrom(file: string, offset: number): string {
  const fd = openSync(file, 'r');
  try {
    const size = statSync(file).size;
    const len = Math.max(0, size - offset);
    const buf = Buffer.alloc(len);
    let got = 0;
    while (got < len) {
      const n = readSync(fd, buf, got, len - got, offset + got);
      if (n <= 0) break;
      got += n;
    }
    return buf.subarray(0, got).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Every complete event logged since the cursor, following a rotation (the old file keeps its inode). */
export function readSince(cur: AuditCursor): AuditEvent[] {
  let text = '';
  const now = statSync(cur.file);
  if (now.ino === cur.ino) {
    text = readFrom(cur.file, cur.offset);
  } else {
    const dir = path.dirname(cur.file);
    const rotated = readdirSync(dir)
      .map((f) => path.join(dir, f))
      .find((f) => {
        try {
          return statSync(f).ino === cur.ino;
        } catch {
          return false;
        }
      });
    if (rotated) text = readFrom(rotated, cur.offset);
    text += (text.endsWith('\n') || !text ? '' : '\n') + readFrom(cur.file, 0);
  }
  const events: AuditEvent[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      events.push(JSON.parse(line) as AuditEvent);
    } catch {
      // a line still being written
    }
  }
  return events;
}

export interface RequestCounts {
  /** Requests made by the side's own client (the worker's ServiceAccount, or the floor's admin user), by verb. */
  client: Record<string, number>;
  /** The same, by "verb resource[/subresource]". */
  clientDetail: Record<string, number>;
  clientTotal: number;
  /** Requests by Kubernetes itself on the execution's objects (kubelet, controllers, garbage collector), by user. */
  cluster: Record<string, number>;
  clusterTotal: number;
}

const LABEL_IN_URI = /durable-sandbox\.dev(?:%2F|\/)execution(?:%3D|=)([0-9a-f]{16})/;

function isClient(username: string): boolean {
  return username === 'kubernetes-admin' || username.startsWith('system:serviceaccount:durable-sandbox-system:');
}

function shortUser(u: string): string {
  return u
    .replace(/^system:serviceaccount:kube-system:/, '')
    .replace(/^system:node:.*/, 'kubelet')
    .replace(/^system:/, '');
}

/** Per execution id: its requests, split into the client's and the cluster's. */
export function countRequests(
  events: AuditEvent[],
  executionIds: string[],
  namespace: string,
  /** Execution id → the pool pod a warm run ran in. */
  pods: Map<string, string> = new Map(),
): Map<string, RequestCounts> {
  const byPod = new Map([...pods].map(([id, pod]) => [pod, id]));
  const byName = new Map<string, string>();
  const byLabel = new Map<string, string>();
  const out = new Map<string, RequestCounts>();
  for (const id of executionIds) {
    const n = resourceNames(id, 1);
    byName.set(n.name, id);
    byLabel.set(n.executionLabel, id);
    out.set(id, { client: {}, clientDetail: {}, clientTotal: 0, cluster: {}, clusterTotal: 0 });
  }
  const seen = new Set<string>();
  for (const e of events) {
    const o = e.objectRef ?? {};
    if (o.namespace !== namespace || seen.has(e.auditID)) continue;
    let id: string | undefined;
    if (o.name) {
      id = byName.get(o.name);
      // A pod of the Job: <job name>-<5 characters>.
      if (!id && o.resource === 'pods') id = byName.get(o.name.replace(/-[a-z0-9]{5}$/, ''));
    }
    if (!id && !o.name) {
      const m = LABEL_IN_URI.exec(e.requestURI);
      if (m) id = byLabel.get(m[1]);
    }
    const user = e.user?.username ?? '?';
    if (!id && o.resource === 'pods' && o.name && isClient(user)) id = byPod.get(o.name);
    if (!id) continue;
    seen.add(e.auditID);
    const c = out.get(id)!;
    if (isClient(user)) {
      c.client[e.verb] = (c.client[e.verb] ?? 0) + 1;
      const what = `${e.verb} ${o.resource}${o.subresource ? `/${o.subresource}` : ''}`;
      c.clientDetail[what] = (c.clientDetail[what] ?? 0) + 1;
      c.clientTotal++;
    } else {
      const u = shortUser(user);
      c.cluster[u] = (c.cluster[u] ?? 0) + 1;
      c.clusterTotal++;
    }
  }
  return out;
}

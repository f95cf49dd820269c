/**
 * Network egress a caller controls, in pure terms: the allow-list an execution or a session asks for (`network: {
 * allow: ['data.example.org', '*.example.net:8443'] }`), checked against the worker's ceiling (DS_EGRESS_ALLOW: what
 * any caller may be allowed; empty by default, so no network), and what a sandbox with one carries: the egress
 * annotation the gateway reads (gateway/), the identity it is known by there, and the proxy settings its program
 * gets. Without an allow-list a sandbox reaches nothing, exactly as before.
 */

/** What a caller asks for. */
export interface NetworkOptions {
  /**
   * Domains the program may reach through the egress gateway: `data.example.org` (that name), `*.example.net` (any
   * name under it, not itself), each optionally with `:port` or `:port,port` (default 443 and 80).
   */
  allow: string[];
}

/** One entry, checked and normalized: lowercase host or `*.suffix`, and its ports. */
export interface EgressRule {
  host: string;
  ports: number[];
}

/** What the worker allows at most, and a sandbox's caps (from the policy, recorded in each execution's history). */
export interface EgressPolicy {
  /** The ceiling: every caller's entry must be within one of these (empty: no egress at all). */
  allow: EgressRule[];
  /** Bytes through the gateway per sandbox, both ways, over all its connections. */
  maxBytes: number;
  /** Connections a sandbox may have open at once. */
  maxConnections: number;
}

export const DEFAULT_PORTS = [443, 80] as const;
export const EGRESS_LIMITS = { maxEntries: 50, maxHostLength: 253 } as const;
export const EGRESS_DEFAULTS = { maxBytes: 256 * 1024 * 1024, maxConnections: 32 } as const;

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Why an entry is not a valid allow-list entry; undefined when it is. */
function entryProblem(host: string): string | undefined {
  if (host.length === 0) return 'is empty';
  if (host.length > EGRESS_LIMITS.maxHostLength) return `is longer than ${EGRESS_LIMITS.maxHostLength} characters`;
  if (IPV4.test(host) || host.includes(':') || host.startsWith('['))
    return 'is an IP address: name a domain (the gateway resolves names itself and refuses internal addresses)';
  const name = host.startsWith('*.') ? host.slice(2) : host;
  if (name.includes('*')) return 'may hold a wildcard only as its first label (*.example.org)';
  const labels = name.split('.');
  if (labels.length < 2) return 'must be a domain with at least two labels (example.org)';
  if (!labels.every((l) => LABEL.test(l))) return 'is not a valid domain name (letters, digits and - in each label)';
  return undefined;
}

/** Parses `host`, `host:port` or `host:port,port` into a rule; throws a message naming what is wrong. */
export function parseEgressEntry(entry: string): EgressRule {
  const raw = entry.trim().toLowerCase().replace(/\.$/, '');
  const colon = raw.lastIndexOf(':');
  const hasPorts = colon > 0 && /^[\d,]+$/.test(raw.slice(colon + 1));
  const host = hasPorts ? raw.slice(0, colon) : raw;
  const problem = entryProblem(host);
  if (problem) throw new Error(problem);
  const ports = hasPorts
    ? raw
        .slice(colon + 1)
        .split(',')
        .map(Number)
    : [...DEFAULT_PORTS];
  for (const p of ports)
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`port ${String(p)} is not between 1 and 65535`);
  return { host, ports: [...new Set(ports)] };
}

/** The text form of a rule, as a caller writes it. */
export function formatEgressRule(r: EgressRule): string {
  const defaults = r.ports.length === DEFAULT_PORTS.length && DEFAULT_PORTS.every((p) => r.ports.includes(p));
  return defaults ? r.host : `${r.host}:${r.ports.join(',')}`;
}

/** Whether a host (or `*.suffix` pattern) is named by a pattern: the same, or under a `*.suffix` pattern. */
function hostWithin(host: string, pattern: string): boolean {
  if (host === pattern) return true;
  if (!pattern.startsWith('*.')) return false;
  const suffix = pattern.slice(1); // ".example.org"
  const name = host.startsWith('*.') ? host.slice(1) : host;
  return name.endsWith(suffix) && name.length > suffix.length;
}

/** Whether the ceiling allows a rule: one ceiling entry names its host (or pattern) on every port it asks for. */
export function withinCeiling(rule: EgressRule, ceiling: EgressRule[]): boolean {
  return ceiling.some((c) => hostWithin(rule.host, c.host) && rule.ports.every((p) => c.ports.includes(p)));
}

/** Reads a ceiling from its text form (DS_EGRESS_ALLOW: entries separated by commas or spaces). */
export function parseEgressCeiling(text: string | undefined): EgressRule[] {
  if (!text?.trim()) return [];
  // A port list uses commas too: a bare number after an entry with ports is one more of its ports.
  const entries: string[] = [];
  for (const token of text
    .trim()
    .split(/[\s,]+/)
    .filter(Boolean)) {
    const last = entries.length - 1;
    if (/^\d+$/.test(token) && last >= 0 && /:[\d,]+$/.test(entries[last])) entries[last] += `,${token}`;
    else entries.push(token);
  }
  return entries.map((e) => {
    try {
      return parseEgressEntry(e);
    } catch (err) {
      throw new Error(`"${e}" ${(err as Error).message}`, { cause: err });
    }
  });
}

/** A caller's network options checked: an error message naming the field, or the rules (undefined: no network). */
export function checkNetwork(
  network: unknown,
  policy: { egress?: EgressPolicy },
): { rules?: EgressRule[]; error?: { field: string; limit: string; message: string } } {
  if (network === undefined || network === null) return {};
  const err = (field: string, limit: string, message: string) => ({ error: { field, limit, message } });
  if (typeof network !== 'object' || Array.isArray(network))
    return err('network', 'type', 'must be an object: { allow: [domains] }');
  const allow = (network as Partial<NetworkOptions>).allow;
  if (allow === undefined) return {};
  if (!Array.isArray(allow)) return err('network.allow', 'type', 'must be an array of domains');
  if (allow.length > EGRESS_LIMITS.maxEntries)
    return err('network.allow', `max ${EGRESS_LIMITS.maxEntries} entries`, `has ${allow.length}`);
  if (allow.length === 0) return {};
  const rules: EgressRule[] = [];
  for (let i = 0; i < allow.length; i++) {
    const entry: unknown = allow[i];
    const field = `network.allow[${i}]`;
    if (typeof entry !== 'string') return err(field, 'type', 'must be a string');
    let rule: EgressRule;
    try {
      rule = parseEgressEntry(entry);
    } catch (e) {
      return err(field, 'domain', `"${entry}" ${(e as Error).message}`);
    }
    // A client that does not know the worker's ceiling checks the form only; the workflow checks the ceiling.
    const ceiling = policy.egress?.allow;
    if (ceiling && !withinCeiling(rule, ceiling))
      return err(
        field,
        ceiling.length
          ? `within ${ceiling.map(formatEgressRule).join(', ')} (DS_EGRESS_ALLOW)`
          : 'no egress (DS_EGRESS_ALLOW is empty)',
        `${formatEgressRule(rule)} is not allowed by this worker's egress policy` +
          (ceiling.length ? '' : ' (it allows no network at all)'),
      );
    rules.push(rule);
  }
  return { rules };
}

/** The egress annotation and label a sandbox pod carries (the gateway tells sandboxes with egress by the label). */
export const EGRESS_LABEL = 'durable-sandbox.dev/egress';
export const EGRESS_ANNOTATION = 'durable-sandbox.dev/egress';

/** A sandbox's egress: its id at the gateway, its rules and caps (what the annotation holds, as JSON). */
export interface SandboxEgress {
  id: string;
  allow: EgressRule[];
  maxBytes: number;
  maxConnections: number;
}

/** The egress id of an execution's attempt (stable: a retried step computes the same id and credential). */
export function attemptEgressId(executionId: string, attempt: number): string {
  return `x-${executionId}-${attempt}`;
}

/** The egress id of a session (the same for every pod it has: its records and credential follow it). */
export function sessionEgressId(sessionId: string): string {
  return `s-${sessionId}`;
}

export function sandboxEgress(id: string, rules: EgressRule[], policy: { egress?: EgressPolicy }): SandboxEgress {
  return {
    id,
    allow: rules,
    maxBytes: policy.egress?.maxBytes ?? EGRESS_DEFAULTS.maxBytes,
    maxConnections: policy.egress?.maxConnections ?? EGRESS_DEFAULTS.maxConnections,
  };
}

/** The labels and annotations that give a pod its egress (none without). */
export function egressMetadata(egress: SandboxEgress | undefined): {
  labels: Record<string, string>;
  annotations: Record<string, string>;
} {
  if (!egress) return { labels: {}, annotations: {} };
  return { labels: { [EGRESS_LABEL]: 'on' }, annotations: { [EGRESS_ANNOTATION]: JSON.stringify(egress) } };
}

/**
 * What a program with egress gets in its environment: the proxy, with its credential, in the names curl, pip,
 * requests, urllib and npm read; certificates from the system's store (which trusts what the host trusts).
 */
export function proxyEnv(gateway: string, id: string, credential: string): Record<string, string> {
  const url = `http://${encodeURIComponent(id)}:${credential}@${gateway}`;
  return {
    HTTP_PROXY: url,
    HTTPS_PROXY: url,
    http_proxy: url,
    https_proxy: url,
    NO_PROXY: 'localhost,127.0.0.1',
    no_proxy: 'localhost,127.0.0.1',
    npm_config_proxy: url,
    npm_config_https_proxy: url,
    PIP_PROXY: url,
    // pip installs for the program's user (HOME is writable, the image is not), past Debian's guard for system Python.
    PIP_USER: '1',
    PIP_BREAK_SYSTEM_PACKAGES: '1',
    PIP_DISABLE_PIP_VERSION_CHECK: '1',
    REQUESTS_CA_BUNDLE: '/etc/ssl/certs/ca-certificates.crt',
    SSL_CERT_FILE: '/etc/ssl/certs/ca-certificates.crt',
    PIP_CERT: '/etc/ssl/certs/ca-certificates.crt',
  };
}

/** One connection (or plain-HTTP request) a sandbox made, as the gateway recorded it. */
export interface NetworkConnection {
  host: string;
  port: number;
  /** `connect`: a tunnel (HTTPS and other TLS); `http`: a plain-HTTP request. */
  kind: string;
  /** When it began, ms since the epoch. */
  at: number;
  /** Bytes the program sent and received through it. */
  sent: number;
  received: number;
  /** Why it was refused, or cut short. */
  reason?: string;
  /** Still open when the result was made (a session's kept connection). */
  open?: boolean;
}

/** What a run's network did: what it reached and what it was refused (with why), as the gateway saw it. */
export interface NetworkReport {
  allow: string[];
  reached: NetworkConnection[];
  refused: NetworkConnection[];
  /** Records the gateway dropped (it keeps the newest 1000 per sandbox). */
  dropped?: number;
  /** The gateway could not be asked (the program's connections were refused then too). */
  error?: string;
}

/** A line for a reader (a model, a person) about each refusal, naming the option that allows a domain. */
export function networkNotes(report: NetworkReport | undefined, option: string): string[] {
  if (!report) return [];
  const notes: string[] = [];
  const seen = new Set<string>();
  for (const r of report.refused) {
    const key = `${r.host}:${r.port}|${r.reason ?? ''}`;
    if (seen.has(key)) continue;
    seen.add(key);
    notes.push(
      `[network: ${r.host || 'a connection'}${r.port ? `:${r.port}` : ''} was refused: ${r.reason ?? 'refused'}]`,
    );
  }
  if (notes.length)
    notes.push(
      `[network: only the allow-list is reachable (${report.allow.join(', ') || 'nothing'}); ${option} allows a domain]`,
    );
  if (report.error) notes.push(`[network: ${report.error}]`);
  return notes;
}

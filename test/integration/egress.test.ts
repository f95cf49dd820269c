/**
 * Network egress on the real stack: a sandbox with an allow-list reaches its named domains through the egress
 * gateway (cold, warm and in a session; HTTP and HTTPS), and nothing else. The "outside" is this test's own HTTP and
 * HTTPS servers in a network namespace of their own, at an address the gateway takes for the internet, named through
 * the gateway's test mapping (its hosts file). Each way out that must be refused is tried from inside a sandbox, and
 * each would succeed without its control: a domain not on the list, a raw IP, another port, a tunnel whose TLS SNI or
 * HTTP Host is not its CONNECT host, allowed names that resolve to private, loopback, link-local, the node's and
 * another sandbox's addresses, the apiserver and the kubelet, a direct connection past the proxy, another sandbox's
 * credential, a sandbox without an allow-list, and a download past the byte cap. Then: `pip install` of a package
 * the image lacks through an allow-list of the package index's hosts (read from this machine's pip), in a session;
 * the gateway down (a clear refusal, no hang) and restarted (no execution lost).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionResult, NetworkConnection } from '../../client';
import { PROJECT_ROOT, STACK_DIR } from '../../cli/local-stack';
import { OUTSIDE_IP, startOutside, type Outside } from '../../dev/outside';
import {
  adminKube,
  eventually,
  poolHasReady,
  SANDBOX_NAMESPACE,
  startWorker,
  uniqueId,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(300_000);
const kube = adminKube();
const PROBE = readFileSync(path.join(PROJECT_ROOT, 'test/fixtures/egress/probe.py'), 'utf8');
/** The byte cap of this file's worker: a download past it is cut. */
const MAX_BYTES = 2 * 1024 * 1024;
const pipIndex = execFileSync('python3', [
  '-c',
  'from pip._internal.models.index import PyPI; print(PyPI.netloc, PyPI.file_storage_domain)',
])
  .toString()
  .trim()
  .split(' ');

let w: TestWorker;
let outside: Outside | undefined;
let ca = '';

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

function nodeIp(): string {
  const route = sh('ip', '-4', 'route', 'get', '1.1.1.1');
  return /src (\S+)/.exec(route)![1];
}

beforeAll(async () => {
  outside = await startOutside();
  ca = outside.ca;
  w = await startWorker({
    DS_EGRESS_ALLOW: `data.example.org other.example.org:80,443,8080 *.example.net:80,443,6443,10250 ${pipIndex.join(' ')}`,
    DS_EGRESS_MAX_BYTES: String(MAX_BYTES),
    DS_WARM_POOL_SIZE: '1',
    DS_WARM_POOL_SIZE_JAVASCRIPT: '0',
    DS_WARM_POOL_SIZE_BASH: '0',
  });
  // The gateway's test mapping: names for the outside, and allowed names that resolve inside.
  const pool = await eventually(
    async () =>
      (
        await kube.core.listNamespacedPod({ namespace: SANDBOX_NAMESPACE, labelSelector: 'durable-sandbox.dev/pool' })
      ).items.filter((p) => p.status?.podIP),
    (pods) => pods.length > 0,
    90_000,
  );
  await outside.map([
    `${OUTSIDE_IP} data.example.org other.example.org`,
    '10.0.0.5 private.example.net',
    '127.0.0.1 loop.example.net',
    '169.254.169.254 meta.example.net',
    `${nodeIp()} node.example.net`,
    `${pool[0].status!.podIP} pod.example.net`,
  ]);
}, 240_000);

afterAll(async () => {
  await w?.stop();
  await outside?.stop();
});

interface Probe {
  probe: string;
  ok: boolean;
  detail: string;
}

function probes(r: Pick<ExecutionResult, 'stdout'>): Record<string, Probe> {
  const out: Record<string, Probe> = {};
  for (const line of r.stdout.split('\n').filter((l) => l.startsWith('{'))) {
    const p = JSON.parse(line) as Probe;
    out[p.probe] = p;
  }
  return out;
}

/**
 * Runs an expectation; its failure also says everything about the run (each probe's words and time, its pod, its
 * stderr) and the host's side of the pod bridge.
 */
function explained(r: ExecutionResult, expectation: () => void): void {
  try {
    expectation();
  } catch (err) {
    const host = (cmd: string, ...args: string[]) => {
      try {
        return sh(cmd, ...args);
      } catch (e) {
        return String(e);
      }
    };
    const why = {
      probes: probes(r),
      pod: r.kubernetes?.pod,
      stderr: r.stderr,
      network: r.network,
      timeline: r.timeline,
      // The host's side of the pod bridge just after: neighbours, the firewall's counters, tracked flows to the gateway.
      neighbours: host('ip', 'neigh', 'show', 'dev', 'dsbr0'),
      firewall: host('iptables', '-L', 'DS-SANDBOX-IN', '-n', '-v', '-x'),
      flows: host('conntrack', '-L', '-p', 'tcp', '--dport', '3128'),
    };
    (err as Error).message += `\n\nthe run: ${JSON.stringify(why, null, 1)}`;
    throw err;
  }
}

function probeInput(names: string[], allow: string[] | undefined, env: Record<string, string> = {}) {
  return {
    code: PROBE,
    files: [{ name: 'outside-ca.pem', content: ca }],
    env: { PROBES: JSON.stringify(names), ...env },
    timeoutSeconds: 120,
    ...(allow ? { network: { allow } } : {}),
  };
}

const refusedFor = (r: ExecutionResult, host: string): NetworkConnection[] =>
  (r.network?.refused ?? []).filter((c) => c.host === host);

test('cold: an allowed domain answers over HTTP and HTTPS; the result lists what was reached', async () => {
  // Limits of its own: the pool's pods do not fit it, so it runs in a Job made for it.
  const r = await w.client.executeCode(
    { ...probeInput(['http', 'https'], ['data.example.org']), limits: { memory: '384Mi' } },
    {
      executionId: uniqueId('egress-cold'),
    },
  );
  const p = probes(r);
  expect([r.stdout, r.stderr]).toEqual([expect.stringContaining('"probe"'), '']);
  expect(p.http).toMatchObject({ ok: true, detail: expect.stringContaining('hello from outside (data.example.org)') });
  expect(p.https).toMatchObject({ ok: true, detail: expect.stringContaining('hello from outside (data.example.org)') });
  expect(r.sandbox).toBe('cold');
  expect(r.network?.allow).toEqual(['data.example.org']);
  expect(r.network?.reached.map((c) => `${c.host}:${c.port}`).sort()).toEqual([
    'data.example.org:443',
    'data.example.org:80',
  ]);
  expect(r.network?.reached.every((c) => c.received > 0)).toBe(true);
  expect(r.network?.refused).toEqual([]);
});

test('warm: a claimed pool pod gets the allow-list with its claim (no new pod)', async () => {
  await poolHasReady(w, 'python', 120_000);
  const r = await w.client.executeCode(probeInput(['http', 'https'], ['data.example.org']), {
    executionId: uniqueId('egress-warm'),
  });
  // Whole objects, so that a failure shows the probes' own words, their times and what the gateway recorded.
  explained(r, () =>
    expect({ sandbox: r.sandbox, http: probes(r).http, https: probes(r).https, network: r.network }).toMatchObject({
      sandbox: 'warm',
      http: { ok: true },
      https: { ok: true },
      network: { reached: [expect.anything(), expect.anything()] },
    }),
  );
});

test('every other way out is refused, and listed as refused with why', async () => {
  const names = [
    'not-listed',
    'raw-ip',
    'other-port',
    'sni-mismatch',
    'host-mismatch',
    'private',
    'loopback',
    'metadata',
    'node-kubelet',
    'apiserver',
    'other-sandbox',
    'direct-outside',
    'direct-kubelet',
  ];
  const r = await w.client.executeCode(probeInput(names, ['data.example.org', '*.example.net:80,443,6443,10250']), {
    executionId: uniqueId('egress-hostile'),
  });
  const p = probes(r);
  for (const n of names) expect([n, p[n]?.ok]).toEqual([n, false]);
  const reasons = (host: string) => refusedFor(r, host).map((c) => c.reason ?? '');
  expect(reasons('other.example.org')).toEqual([expect.stringContaining("not on the sandbox's allow-list")]);
  expect(reasons(OUTSIDE_IP)).toEqual([expect.stringContaining('raw IP')]);
  expect(reasons('data.example.org')).toEqual(
    expect.arrayContaining([
      expect.stringContaining('port 8080 is not allowed'),
      expect.stringContaining(
        'the name inside the tunnel (other.example.org) is not the CONNECT host data.example.org',
      ),
    ]),
  );
  expect(reasons('data.example.org')).toHaveLength(3); // the SNI and the Host mismatch, and the port
  for (const host of [
    'private.example.net',
    'loop.example.net',
    'meta.example.net',
    'node.example.net',
    'pod.example.net',
  ])
    expect([host, reasons(host).length > 0 && reasons(host).every((why) => /denied|no valid IP/i.test(why))]).toEqual([
      host,
      true,
    ]);
  expect(reasons('node.example.net')).toHaveLength(2); // the kubelet and the apiserver
  // Past the proxy there is no route at all; the node's own ports are not reachable from a sandbox.
  expect(p['direct-outside'].detail).toMatch(/unreachable|No route|Errno 101|Errno 113|timed out/i);
  expect(p['direct-kubelet'].detail).toMatch(/timed out|refused/i);
  expect(r.network?.reached).toEqual([]);
});

test("a sandbox presenting another sandbox's credential is refused; one without an allow-list reaches nothing, the gateway included", async () => {
  const a = await w.client.executeCode(probeInput(['credential'], ['data.example.org']), {
    executionId: uniqueId('egress-id-a'),
  });
  const stolen = probes(a).credential.detail;
  expect(stolen).toMatch(/^http:\/\/x-egress-id-a[^:]*:[0-9a-f]{64}@/);
  // B presents A's credential (its own id and secret replaced by A's) from its own pod.
  const b = await w.client.executeCode(probeInput(['http'], ['data.example.org'], { OTHER_PROXY: stolen }), {
    executionId: uniqueId('egress-id-b'),
  });
  explained(b, () =>
    expect({ http: probes(b).http, refused: refusedFor(b, 'data.example.org').map((c) => c.reason) }).toMatchObject({
      http: { ok: false },
      refused: ["the credential is not this sandbox's"],
    }),
  );
  const none = await w.client.executeCode(probeInput(['direct-gateway', 'http'], undefined, { OTHER_PROXY: stolen }), {
    executionId: uniqueId('egress-none'),
  });
  expect(probes(none)['direct-gateway']).toMatchObject({ ok: false, detail: expect.stringMatching(/refused/i) });
  expect(probes(none).http.ok).toBe(false);
  expect(none.network).toBeUndefined();
});

test('the byte cap stops a download past it, and says so', async () => {
  const r = await w.client.executeCode(probeInput(['big'], ['data.example.org'], { BIG: String(4 * MAX_BYTES) }), {
    executionId: uniqueId('egress-cap'),
  });
  const cut = [...(r.network?.reached ?? []), ...(r.network?.refused ?? [])];
  expect({ big: probes(r).big, cut }).toMatchObject({
    big: { ok: false },
    cut: expect.arrayContaining([expect.objectContaining({ reason: expect.stringMatching(/byte cap/) })]),
  });
  expect(cut.reduce((n, c) => n + c.received, 0)).toBeLessThanOrEqual(MAX_BYTES + 256 * 1024);
});

test('a session keeps its allow-list for its life: `pip install` of a package the image lacks, imported in the next run', async () => {
  const session = await w.client.openSession({ network: { allow: [...pipIndex, 'data.example.org'] } });
  try {
    const missing = await session.run('import importlib.util\nprint(importlib.util.find_spec("tomli_w") is None)');
    expect(missing.stdout).toBe('True\n');
    const pip = await session.run(
      'import subprocess, sys\nr = subprocess.run([sys.executable, "-m", "pip", "install", "--no-input", "tomli-w==1.2.0"], capture_output=True, text=True)\nprint(r.returncode)\nprint(r.stderr[-2000:])',
      { timeoutSeconds: 120 },
    );
    expect(pip.stdout.split('\n')[0]).toBe('0');
    expect(pip.network?.reached.map((c) => c.host)).toEqual(expect.arrayContaining(pipIndex));
    const used = await session.run('import tomli_w\nprint(tomli_w.dumps({"ok": True}), end="")');
    expect(used.stdout).toBe('ok = true\n');
  } finally {
    await session.close();
  }
});

async function gatewayPid(): Promise<number | undefined> {
  try {
    const pid = Number(readFileSync(path.join(STACK_DIR, 'pids', 'gateway.pid'), 'utf8'));
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

function stackUp(): void {
  execFileSync('bash', [path.join(PROJECT_ROOT, 'scripts/stack/up.sh')], { stdio: 'ignore' });
}

test('the gateway down: a run that needs it is refused at once, not hung; restarted: no execution is lost', async () => {
  if ((await gatewayPid()) === undefined) stackUp();
  const pid = await gatewayPid();
  expect(pid).toBeDefined();
  process.kill(pid!, 'SIGTERM');
  await eventually(gatewayPid, (p) => p === undefined, 20_000);
  try {
    const started = Date.now();
    const r = await w.client.executeCode(probeInput(['http'], ['data.example.org']), {
      executionId: uniqueId('egress-down'),
    });
    if (!/refused/i.test(probes(r).http?.detail ?? ''))
      console.log(
        'gateway down, not refused:',
        r.stdout,
        r.sandbox,
        sh('iptables', '-L', 'DS-SANDBOX-IN', '-n', '-v'),
        sh('ipset', 'list', 'ds-egress'),
        sh('ss', '-tlnp'),
      );
    expect(Date.now() - started).toBeLessThan(30_000);
    expect([probes(r).http, r.durationMs]).toMatchObject([
      { ok: false, detail: expect.stringMatching(/refused/i) },
      expect.any(Number),
    ]);
    expect(r.network?.error).toMatch(/egress gateway could not be asked/);
  } finally {
    stackUp();
  }
  // A program that keeps using the network while the gateway restarts ends with its result.
  const loop =
    'import time, urllib.request, os\nok = 0\nfor i in range(12):\n    try:\n        urllib.request.urlopen("http://data.example.org/", timeout=3).read(); ok += 1\n    except Exception as e:\n        print("failed", i, e)\n    time.sleep(1)\nprint("ok", ok)';
  const running = w.client.executeCode(
    { code: loop, timeoutSeconds: 60, network: { allow: ['data.example.org'] } },
    { executionId: uniqueId('egress-restart') },
  );
  await new Promise((r) => setTimeout(r, 4000));
  process.kill((await gatewayPid())!, 'SIGTERM');
  await eventually(gatewayPid, (p) => p === undefined, 20_000);
  stackUp();
  const r = await running;
  expect(r.status).toBe('succeeded');
  const ok = Number(/ok (\d+)/.exec(r.stdout)?.[1]);
  expect(ok).toBeGreaterThan(3);
  // After the restart the gateway served it again (a restarted gateway keeps no records of before).
  expect(await fetch('http://127.0.0.1:3129/healthz').then((x) => x.ok)).toBe(true);
});

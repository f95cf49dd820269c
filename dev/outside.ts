/**
 * An "outside" for the local stack's egress (tests and bench): HTTP and HTTPS servers (test/fixtures/egress/
 * outside-server.js) in a network namespace of their own, reached from the node (where the egress gateway runs) at
 * an address the gateway takes for the internet, and named in the gateway's hosts file (its test mapping). With
 * `onBridge`, the namespace also sits on the pod bridge at an address of the pod range, with the bridge's isolation
 * opened for it alone: a pod reaches it directly, with no gateway (the bench's floor). Development only.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT, STACK_DIR } from '../cli/local-stack';

/** The outside's address as the gateway reaches it (a benchmarking range: global to the gateway, routed here). */
export const OUTSIDE_IP = '198.18.77.10';
/** Its address on the pod bridge (with `onBridge`): what a pod reaches directly. */
export const OUTSIDE_BRIDGE_IP = '10.88.255.10';
const BRIDGE = 'dsbr0';
const GATEWAY_HOSTS = path.join(STACK_DIR, 'gateway', 'hosts');

export interface Outside {
  /** The PEM certificate its HTTPS server presents (for data.example.org and other.example.org). */
  ca: string;
  /** Names it in the gateway's hosts file (name → address lines); the gateway reads them within a second. */
  map(lines: string[]): Promise<void>;
  stop(): Promise<void>;
}

function sh(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

function quietly(fn: () => unknown): void {
  try {
    fn();
  } catch {
    // already gone
  }
}

export async function startOutside(options: { onBridge?: boolean } = {}): Promise<Outside> {
  const id = `${process.pid % 100000}`;
  const ns = `ds-out-${id}`;
  const veth = `dso${id}`;
  const bveth = `dsb${id}`;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'ds-outside-'));
  const hostsBefore = readFileSync(GATEWAY_HOSTS, 'utf8');
  const isolation = [
    'FORWARD',
    '-i',
    BRIDGE,
    '-o',
    BRIDGE,
    '-m',
    'comment',
    '--comment',
    'durable-sandbox bench: the outside on the bridge',
  ];
  let server: ChildProcess | undefined;
  const stop = async () => {
    writeFileSync(GATEWAY_HOSTS, hostsBefore);
    server?.kill();
    if (options.onBridge) {
      quietly(() => sh('iptables', '-D', ...isolation, '-d', OUTSIDE_BRIDGE_IP, '-j', 'ACCEPT'));
      quietly(() => sh('iptables', '-D', ...isolation, '-s', OUTSIDE_BRIDGE_IP, '-j', 'ACCEPT'));
      quietly(() => sh('ip', 'link', 'del', `${bveth}h`));
    }
    quietly(() => sh('ip', 'link', 'del', `${veth}h`));
    quietly(() => sh('ip', 'netns', 'del', ns));
    rmSync(tmp, { recursive: true, force: true });
  };
  try {
    sh('ip', 'netns', 'add', ns);
    sh('ip', 'link', 'add', `${veth}h`, 'type', 'veth', 'peer', 'name', `${veth}n`);
    sh('ip', 'link', 'set', `${veth}n`, 'netns', ns);
    sh('ip', 'addr', 'add', '198.18.77.1/24', 'dev', `${veth}h`);
    sh('ip', 'link', 'set', `${veth}h`, 'up');
    const inNs = (...args: string[]) => sh('ip', 'netns', 'exec', ns, ...args);
    inNs('ip', 'addr', 'add', `${OUTSIDE_IP}/24`, 'dev', `${veth}n`);
    inNs('ip', 'link', 'set', `${veth}n`, 'up');
    inNs('ip', 'link', 'set', 'lo', 'up');
    inNs('ip', 'route', 'add', 'default', 'via', '198.18.77.1');
    if (options.onBridge) {
      sh('ip', 'link', 'add', `${bveth}h`, 'type', 'veth', 'peer', 'name', `${bveth}n`);
      sh('ip', 'link', 'set', `${bveth}n`, 'netns', ns);
      sh('ip', 'link', 'set', `${bveth}h`, 'master', BRIDGE);
      sh('ip', 'link', 'set', `${bveth}h`, 'up');
      inNs('ip', 'addr', 'add', `${OUTSIDE_BRIDGE_IP}/16`, 'dev', `${bveth}n`);
      inNs('ip', 'link', 'set', `${bveth}n`, 'up');
      // The bridge drops traffic between its ports (pods never talk to each other): open it for the outside alone.
      sh('iptables', '-I', ...isolation, '-d', OUTSIDE_BRIDGE_IP, '-j', 'ACCEPT');
      sh('iptables', '-I', ...isolation, '-s', OUTSIDE_BRIDGE_IP, '-j', 'ACCEPT');
    }
    sh(
      'openssl',
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      path.join(tmp, 'key.pem'),
      '-out',
      path.join(tmp, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=data.example.org',
      '-addext',
      'subjectAltName=DNS:data.example.org,DNS:other.example.org',
    );
    server = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, path.join(PROJECT_ROOT, 'test/fixtures/egress/outside-server.js'), tmp],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve, reject) => {
      server!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      server!.once('exit', (code) => reject(new Error(`the outside server exited (${code})`)));
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    ca: readFileSync(path.join(tmp, 'cert.pem'), 'utf8'),
    async map(lines) {
      writeFileSync(
        GATEWAY_HOSTS,
        `${hostsBefore}${hostsBefore && !hostsBefore.endsWith('\n') ? '\n' : ''}${lines.join('\n')}\n`,
      );
      await new Promise((r) => setTimeout(r, 1500)); // the gateway looks at the file twice a second
    },
    stop,
  };
}

/**
 * Egress in the bench: a 1 MB download from the local outside server (dev/outside.ts), ours through the egress
 * gateway (cold and warm) against the fast floor's pod downloading the same bytes with a direct route (the outside
 * on the pod bridge, its isolation opened for it alone), interleaved; and what an allow-list adds to a warm
 * print(1) (the claim carries it, the launcher waits for the gateway), against the same warm print(1) without one.
 */
import { OUTSIDE_BRIDGE_IP, OUTSIDE_IP, startOutside } from '../../dev/outside';
import type { FloorDeps } from './floor';
import { runFastFloor } from './fast-floor';
import { poolReady, runOurs, startBenchWorker, type BenchWorker } from './ours';
import { fmt, median, summarize, table } from './stats';
import type { RunRecord } from './types';
import type { Workload } from './workloads';
import type { Kube } from '../../activities/kube';

const ONE_MB = 1024 * 1024;
const ALLOW = ['data.example.org'];

const download = (url: string) =>
  `import urllib.request\nd = urllib.request.urlopen("${url}", timeout=30).read()\nprint(len(d))\n`;
const gotOneMb = (out: string) => out === `${ONE_MB}\n`;

export const EGRESS_WORKLOADS = {
  direct: {
    key: 'download-direct',
    label: '1 MB download, direct route',
    input: { code: download(`http://${OUTSIDE_BRIDGE_IP}/big?n=${ONE_MB}`), timeoutSeconds: 60 },
    check: gotOneMb,
  },
  gateway: {
    key: 'download-gateway',
    label: '1 MB download, through the gateway',
    input: {
      code: download(`http://data.example.org/big?n=${ONE_MB}`),
      timeoutSeconds: 60,
      network: { allow: ALLOW },
    },
    check: gotOneMb,
  },
  print: {
    key: 'print',
    label: 'print(1)',
    input: { code: 'print(1)\n', timeoutSeconds: 30 },
    check: (o: string) => o === '1\n',
  },
  printAllowed: {
    key: 'print-allowed',
    label: 'print(1) with an allow-list',
    input: { code: 'print(1)\n', timeoutSeconds: 30, network: { allow: ALLOW } },
    check: (o: string) => o === '1\n',
  },
} satisfies Record<string, Workload>;

export interface EgressBenchDeps {
  kube: Kube;
  launcherSource: string;
  floorDeps: () => FloorDeps;
  rounds: number;
  newId: (side: 'fast' | 'ours' | 'warm') => string;
  log: (line: string) => void;
  check: () => void;
  /** The bench's own workers are tracked (stopped on an interrupt). */
  track: (w: BenchWorker) => void;
}

export interface EgressBenchResult {
  markdown: string;
  summary: Record<string, unknown>;
}

export async function benchEgress(deps: EgressBenchDeps): Promise<EgressBenchResult> {
  const outside = await startOutside({ onBridge: true });
  const workers: BenchWorker[] = [];
  try {
    await outside.map([`${OUTSIDE_IP} data.example.org`]);
    const env = { DS_EGRESS_ALLOW: ALLOW.join(' ') };
    const cold = await startBenchWorker(env);
    const warm = await startBenchWorker({
      ...env,
      DS_WARM_POOL_SIZE: '1',
      DS_WARM_POOL_SIZE_JAVASCRIPT: '0',
      DS_WARM_POOL_SIZE_BASH: '0',
    });
    workers.push(cold, warm);
    for (const w of workers) deps.track(w);
    const ready = async () => {
      const n = await poolReady(warm, deps.kube, deps.launcherSource, 1);
      if (n < 1) deps.log('the warm pool has no ready pod after 120 s');
    };
    const alone = async (run: Promise<{ record: RunRecord; background: Promise<void> }>) => {
      const r = await run;
      await r.background;
      return r.record;
    };
    const W = EGRESS_WORKLOADS;
    const runs: Record<'fast' | 'ours' | 'warm' | 'warmPrint' | 'warmPrintAllowed', RunRecord[]> = {
      fast: [],
      ours: [],
      warm: [],
      warmPrint: [],
      warmPrintAllowed: [],
    };
    // Warm-up (not counted): one of each.
    await alone(runFastFloor(deps.floorDeps(), W.direct, deps.newId('fast')));
    await alone(runOurs(cold, W.gateway, deps.newId('ours')));
    for (let i = 0; i < deps.rounds; i++) {
      deps.check();
      runs.fast.push(await alone(runFastFloor(deps.floorDeps(), W.direct, deps.newId('fast'))));
      runs.ours.push(await alone(runOurs(cold, W.gateway, deps.newId('ours'))));
      await ready();
      runs.warm.push(await alone(runOurs(warm, W.gateway, deps.newId('warm'), 'warm')));
      // The two warm print(1)s take turns on which goes first.
      const pair = [
        async () => runs.warmPrint.push(await alone(runOurs(warm, W.print, deps.newId('warm'), 'warm'))),
        async () => runs.warmPrintAllowed.push(await alone(runOurs(warm, W.printAllowed, deps.newId('warm'), 'warm'))),
      ];
      for (const step of i % 2 ? pair.reverse() : pair) {
        await ready();
        await step();
      }
      const show = (r: RunRecord) => (r.ok ? `${r.latencyMs} ms` : `FAILED (${r.status}: ${r.error ?? ''})`);
      deps.log(
        `egress round ${i + 1}/${deps.rounds}: download fast ${show(runs.fast[i])}, ours ${show(runs.ours[i])}, ` +
          `warm ${show(runs.warm[i])}; warm print(1) ${show(runs.warmPrint[i])}, with allow-list ${show(runs.warmPrintAllowed[i])}`,
      );
    }
    const ok = (rs: RunRecord[]) => rs.filter((r) => r.ok);
    const lat = (rs: RunRecord[]) => summarize(ok(rs).map((r) => r.latencyMs));
    const dur = (rs: RunRecord[]) => summarize(ok(rs).map((r) => r.durationMs ?? NaN));
    const ratio = (a: RunRecord[], b: RunRecord[]) =>
      median(ok(a).map((r) => r.latencyMs)) / median(ok(b).map((r) => r.latencyMs));
    const summary = {
      rounds: deps.rounds,
      download: {
        fast: { latency: lat(runs.fast), inSandbox: dur(runs.fast), failed: runs.fast.length - ok(runs.fast).length },
        ours: { latency: lat(runs.ours), inSandbox: dur(runs.ours), failed: runs.ours.length - ok(runs.ours).length },
        warm: { latency: lat(runs.warm), inSandbox: dur(runs.warm), failed: runs.warm.length - ok(runs.warm).length },
        oursOverFast: ratio(runs.ours, runs.fast),
        warmOverFast: ratio(runs.warm, runs.fast),
        inSandboxGatewayOverDirect:
          median(ok(runs.ours).map((r) => r.durationMs ?? NaN)) / median(ok(runs.fast).map((r) => r.durationMs ?? NaN)),
      },
      warmPrint: {
        without: lat(runs.warmPrint),
        withAllowList: lat(runs.warmPrintAllowed),
        addedP50Ms:
          median(ok(runs.warmPrintAllowed).map((r) => r.latencyMs)) -
          median(ok(runs.warmPrint).map((r) => r.latencyMs)),
      },
    };
    const rows: (string | number)[][] = [
      ['side', 'runs ok', 'end-to-end p50 ms', 'p95 ms', 'in-sandbox p50 ms'],
      ...(['fast', 'ours', 'warm'] as const).map((s) => [
        s === 'fast' ? 'fast floor, direct route' : s === 'ours' ? 'ours (cold), gateway' : 'warm, gateway',
        `${ok(runs[s]).length}/${runs[s].length}`,
        fmt(lat(runs[s]).p50),
        fmt(lat(runs[s]).p95),
        fmt(dur(runs[s]).p50),
      ]),
    ];
    const markdown = [
      table(rows),
      '',
      `ours/fast ${fmt(summary.download.oursOverFast, 2)}, warm/fast ${fmt(summary.download.warmOverFast, 2)} ` +
        `(end-to-end p50s); the download itself inside the sandbox, gateway/direct: ${fmt(summary.download.inSandboxGatewayOverDirect, 2)}.`,
      '',
      `A warm print(1) with an allow-list: p50 ${fmt(summary.warmPrint.withAllowList.p50)} ms against ` +
        `${fmt(summary.warmPrint.without.p50)} ms without one (+${fmt(summary.warmPrint.addedP50Ms)} ms: the egress ` +
        'annotation and label on the claim, the credential in the task, the launcher waiting for the gateway).',
    ].join('\n');
    return { markdown, summary };
  } finally {
    for (const w of workers) await w.close().catch(() => undefined);
    await outside.stop();
  }
}

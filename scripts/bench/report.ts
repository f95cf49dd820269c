/** Turns the bench's records into the summary (written as JSON) and the tables (printed, and written as Markdown). */
import type { RequestCounts } from './audit';
import type { HistoryCost } from './ours';
import type { LoadReport } from './sampler';
import { fmt, median, quantile, summarize, table, type Summary } from './stats';
import { PHASES, SIDES, type RunRecord, type Side } from './types';
import { WORKLOADS } from './workloads';

/** One round of a workload: the same program through each side, one after the other. */
export type Pair = { workload: string } & Record<Side, RunRecord>;

export interface Burst {
  size: number;
  /** Which round of bursts of this size (0-based; each round runs every side once). */
  round: number;
  side: Side;
  workload: string;
  wallMs: number;
  records: RunRecord[];
  load: LoadReport;
  /** The 3 s before the burst. */
  baseline: LoadReport;
  cpuMs: number;
  /** Warm bursts: from the burst's start until the pool had its size of ready pods again. */
  poolRefilledMs?: number;
}

/**
 * Phase steps; 'call' and 'result' are the client's own clock. The result comes after the output (fast, ours) or
 * after cleanup (floor); outputCollected→cleanedUp is cleanup, on the caller's time or in the background.
 */
export const STEPS: [string, string][] = [
  ['call', 'started'],
  ...PHASES.slice(1, -1).map((p, i) => [PHASES[i], p] as [string, string]),
  ['outputCollected', 'result'],
  ['outputCollected', 'cleanedUp'],
];

function stepMs(r: RunRecord, from: string, to: string): number {
  const at = (p: string): number | undefined =>
    p === 'call' ? r.t0 : p === 'result' ? r.t1 : r.phases[p as keyof RunRecord['phases']];
  const a = at(from);
  const b = at(to);
  return a !== undefined && b !== undefined ? b - a : NaN;
}

export function phaseMedians(records: RunRecord[]): Record<string, number> {
  const ok = records.filter((r) => r.ok);
  return Object.fromEntries(STEPS.map(([a, b]) => [`${a}→${b}`, median(ok.map((r) => stepMs(r, a, b)))]));
}

export interface PairSummary {
  workload: string;
  pairs: number;
  latency: Record<Side, Summary & { ok: number }>;
  /** ours / floor and ours / fast, per round. */
  ratio: { floor: { p50: number; p95: number }; fast: { p50: number; p95: number } };
  /** ours − fast per round, ms. */
  overheadMs: { p50: number; p95: number; max: number };
  /** warm / fast per round. */
  warmRatio: { p50: number; p95: number };
  phases: Record<Side, Record<string, number>>;
  costs: Record<Side, CostSummary>;
  /** The program's run time in the sandbox (launcher's clock), ms. */
  durationMs: Record<Side, Summary>;
}

export interface CostSummary {
  /** Medians per execution. */
  clientRequestsByVerb: Record<string, number>;
  clientRequestsByCall: Record<string, number>;
  clientRequests: number;
  clusterRequests: number;
  clusterRequestsByUser: Record<string, number>;
  historyEvents?: number;
  historyBytes?: number;
  historyEventsByType?: Record<string, number>;
  cpuMs: number;
}

function medianOfKeys(rows: Record<string, number>[]): Record<string, number> {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))].sort();
  return Object.fromEntries(keys.map((k) => [k, median(rows.map((r) => r[k] ?? 0))]));
}

function costSummary(
  records: RunRecord[],
  requests: Map<string, RequestCounts>,
  histories: Map<string, HistoryCost>,
): CostSummary {
  const req = records.map((r) => requests.get(r.executionId)).filter((x): x is RequestCounts => !!x);
  const hist = records.map((r) => histories.get(r.executionId)).filter((x): x is HistoryCost => !!x);
  return {
    clientRequestsByVerb: medianOfKeys(req.map((r) => r.client)),
    clientRequestsByCall: medianOfKeys(req.map((r) => r.clientDetail)),
    clientRequests: median(req.map((r) => r.clientTotal)),
    clusterRequests: median(req.map((r) => r.clusterTotal)),
    clusterRequestsByUser: medianOfKeys(req.map((r) => r.cluster)),
    ...(hist.length
      ? {
          historyEvents: median(hist.map((h) => h.events)),
          historyBytes: median(hist.map((h) => h.bytes)),
          historyEventsByType: medianOfKeys(hist.map((h) => h.byType)),
        }
      : {}),
    cpuMs: median(records.map((r) => r.cpuUserMs + r.cpuSystemMs)),
  };
}

function bySide<T>(f: (side: Side) => T): Record<Side, T> {
  return Object.fromEntries(SIDES.map((side) => [side, f(side)])) as Record<Side, T>;
}

export function summarizePairs(
  pairs: Pair[],
  requests: Map<string, RequestCounts>,
  histories: Map<string, HistoryCost>,
): PairSummary[] {
  const out: PairSummary[] = [];
  for (const w of WORKLOADS) {
    const ps = pairs.filter((p) => p.workload === w.key);
    if (!ps.length) continue;
    const ratio = (base: Side, side: Side = 'ours') => {
      const both = ps.filter((p) => p[base].ok && p[side].ok).map((p) => p[side].latencyMs / p[base].latencyMs);
      return { p50: quantile(both, 0.5), p95: quantile(both, 0.95) };
    };
    const over = ps.filter((p) => p.fast.ok && p.ours.ok).map((p) => p.ours.latencyMs - p.fast.latencyMs);
    out.push({
      workload: w.key,
      pairs: ps.length,
      latency: bySide((side) => ({
        ...summarize(ps.filter((p) => p[side].ok).map((p) => p[side].latencyMs)),
        ok: ps.filter((p) => p[side].ok).length,
      })),
      ratio: { floor: ratio('floor'), fast: ratio('fast') },
      warmRatio: ratio('fast', 'warm'),
      overheadMs: { p50: quantile(over, 0.5), p95: quantile(over, 0.95), max: over.length ? Math.max(...over) : NaN },
      phases: bySide((side) => phaseMedians(ps.map((p) => p[side]))),
      durationMs: bySide((side) => summarize(ps.filter((p) => p[side].ok).map((p) => p[side].durationMs ?? NaN))),
      costs: bySide((side) =>
        costSummary(
          ps.map((p) => p[side]),
          requests,
          histories,
        ),
      ),
    });
  }
  return out;
}

export interface BurstSummary {
  size: number;
  round: number;
  side: Side;
  workload: string;
  ok: number;
  wallS: number;
  throughputPerS: number;
  latency: Summary;
  rssStartMiB: number;
  rssPeakMiB: number;
  cpuMsPerExecution: number;
  load: LoadReport;
  baseline: LoadReport;
  phases: Record<string, number>;
}

export function summarizeBursts(bursts: Burst[]): BurstSummary[] {
  return bursts.map((b) => ({
    size: b.size,
    round: b.round ?? 0,
    side: b.side,
    workload: b.workload,
    ok: b.records.filter((r) => r.ok).length,
    wallS: b.wallMs / 1000,
    throughputPerS: b.records.filter((r) => r.ok).length / (b.wallMs / 1000),
    latency: summarize(b.records.filter((r) => r.ok).map((r) => r.latencyMs)),
    rssStartMiB: b.load.rssStartMiB,
    rssPeakMiB: b.load.rssPeakMiB,
    cpuMsPerExecution: b.cpuMs / b.size,
    load: b.load,
    baseline: b.baseline,
    phases: phaseMedians(b.records),
  }));
}

const label = (key: string) => WORKLOADS.find((w) => w.key === key)?.label ?? key;

export function latencyTable(s: PairSummary[]): string {
  const rows: (string | number)[][] = [
    [
      'workload',
      'rounds (ok)',
      'floor p50',
      'fast p50',
      'fast p95',
      'ours p50',
      'ours p95',
      'ours max',
      'ours/floor p50',
      'ours/fast p50 (p95)',
      'ours−fast p50 (p95)',
      'warm p50',
      'warm p95',
      'warm/fast p50',
    ],
  ];
  for (const x of s) {
    const l = x.latency;
    rows.push([
      label(x.workload),
      `${x.pairs} (${l.floor.ok}/${l.fast.ok}/${l.ours.ok}/${l.warm.ok})`,
      fmt(l.floor.p50),
      fmt(l.fast.p50),
      fmt(l.fast.p95),
      fmt(l.ours.p50),
      fmt(l.ours.p95),
      fmt(l.ours.max),
      `${fmt(x.ratio.floor.p50, 2)}x`,
      `${fmt(x.ratio.fast.p50, 2)}x (${fmt(x.ratio.fast.p95, 2)}x)`,
      `+${fmt(x.overheadMs.p50)} (+${fmt(x.overheadMs.p95)})`,
      fmt(l.warm.p50),
      fmt(l.warm.p95),
      `${fmt(x.warmRatio.p50, 2)}x`,
    ]);
  }
  return table(rows);
}

export function durationTable(s: PairSummary[]): string {
  const rows: (string | number)[][] = [['workload', ...SIDES.map((side) => `${side} p50`), 'ours p95', 'warm p95']];
  for (const x of s) {
    const d = x.durationMs;
    rows.push([label(x.workload), ...SIDES.map((side) => fmt(d[side].p50)), fmt(d.ours.p95), fmt(d.warm.p95)]);
  }
  return table(rows);
}

/** A workload's in-sandbox run time over its twin's (the same work done another way), per side, from the medians. */
export interface TwinRatio {
  workload: string;
  twin: string;
  ratio: Record<Side, number>;
}

export function twinRatios(s: PairSummary[]): TwinRatio[] {
  const out: TwinRatio[] = [];
  for (const w of WORKLOADS) {
    const a = s.find((x) => x.workload === w.key);
    const b = s.find((x) => x.workload === w.twin);
    if (!a || !b) continue;
    out.push({
      workload: a.workload,
      twin: b.workload,
      ratio: bySide((side) => a.durationMs[side].p50 / b.durationMs[side].p50),
    });
  }
  return out;
}

export function twinLines(ratios: TwinRatio[]): string {
  return ratios
    .map(
      (r) =>
        `- ${label(r.workload)} / ${label(r.twin)}: ` +
        SIDES.map((side) => `${side} ${fmt(r.ratio[side], 2)}x`).join(', '),
    )
    .join('\n');
}

export function phaseTable(s: PairSummary[]): string {
  const header: string[] = ['step (median ms)'];
  for (const x of s) header.push(...SIDES.map((side) => `${label(x.workload)} ${side}`));
  const rows: (string | number)[][] = [header];
  for (const [a, b] of STEPS) {
    const k = `${a}→${b}`;
    const row: (string | number)[] = [k];
    for (const x of s) row.push(...SIDES.map((side) => fmt(x.phases[side][k])));
    rows.push(row);
  }
  return table(rows);
}

const VERBS = ['create', 'get', 'list', 'watch', 'patch', 'delete'];

export function costTable(s: PairSummary[]): string {
  const rows: (string | number)[][] = [
    ['workload', 'side', ...VERBS, 'client total', 'cluster total', 'history events', 'history bytes', 'CPU ms'],
  ];
  for (const x of s) {
    for (const side of SIDES) {
      const c = x.costs[side];
      rows.push([
        label(x.workload),
        side,
        ...VERBS.map((v) => fmt(c.clientRequestsByVerb[v] ?? 0)),
        fmt(c.clientRequests),
        fmt(c.clusterRequests),
        c.historyEvents === undefined ? '-' : fmt(c.historyEvents),
        c.historyBytes === undefined ? '-' : fmt(c.historyBytes),
        fmt(c.cpuMs),
      ]);
    }
  }
  return table(rows);
}

/** The components shown in the scaling table's load columns. */
const LOAD_KEYS = [
  'sandbox pods',
  'kube-apiserver',
  'kubelet',
  'containerd',
  'etcd',
  'temporal',
  'bench (worker+client)',
  'runsc shims',
  'rest of node',
];

export function scalingTable(s: BurstSummary[]): string {
  const rows: (string | number)[][] = [
    [
      'burst',
      'round',
      'side',
      'ok',
      'wall s',
      'exec/s',
      'p50 ms',
      'p95 ms',
      'CPU ms/exec',
      'RSS start/peak MiB',
      'node CPU before %',
      'node CPU avg/peak %',
      ...LOAD_KEYS.map((k) => `${k} %`),
    ],
  ];
  for (const b of s) {
    rows.push([
      b.size,
      b.round + 1,
      b.side,
      `${b.ok}/${b.size}`,
      fmt(b.wallS, 1),
      fmt(b.throughputPerS, 2),
      fmt(b.latency.p50),
      fmt(b.latency.p95),
      fmt(b.cpuMsPerExecution),
      `${fmt(b.rssStartMiB)}/${fmt(b.rssPeakMiB)}`,
      fmt(b.baseline.nodeBusyAvgPct),
      `${fmt(b.load.nodeBusyAvgPct)}/${fmt(b.load.nodeBusyPeakPct)}`,
      ...LOAD_KEYS.map((k) => fmt(b.load.cpuAvgPct[k] ?? NaN)),
    ]);
  }
  return table(rows);
}

/** Median ms per step for each burst size and side, the records of every round pooled. */
export function scalingPhaseTable(bursts: Burst[]): string {
  const groups = new Map<string, RunRecord[]>();
  for (const b of bursts) {
    const key = `${b.size} ${b.side}`;
    groups.set(key, [...(groups.get(key) ?? []), ...b.records]);
  }
  const pooled = [...groups.entries()].map(([key, records]) => ({ key, phases: phaseMedians(records) }));
  const rows: (string | number)[][] = [['step (median ms)', ...pooled.map((g) => g.key)]];
  for (const [a, b] of STEPS) {
    const k = `${a}→${b}`;
    rows.push([k, ...pooled.map((g) => fmt(g.phases[k]))]);
  }
  return table(rows);
}

export interface BurstRatio {
  size: number;
  /** Per round: ours p50 / fast p50 and warm p50 / fast p50 of the same round. */
  rounds: { ours: number; warm: number }[];
  /** The medians of the rounds' ratios. */
  ours: number;
  warm: number;
}

/**
 * The bursts' ratios against the fast floor, round by round (each round's sides ran one after the other, so they
 * shared the node's state of the moment), and their medians over the rounds.
 */
export function burstRatios(s: BurstSummary[]): BurstRatio[] {
  const out: BurstRatio[] = [];
  for (const size of [...new Set(s.map((b) => b.size))]) {
    const rounds: BurstRatio['rounds'] = [];
    for (const round of [...new Set(s.filter((b) => b.size === size).map((b) => b.round))]) {
      const p50 = (side: Side) => s.find((b) => b.size === size && b.round === round && b.side === side)?.latency.p50;
      const fast = p50('fast');
      if (fast === undefined || !(fast > 0)) continue;
      rounds.push({ ours: (p50('ours') ?? NaN) / fast, warm: (p50('warm') ?? NaN) / fast });
    }
    if (rounds.length === 0) continue;
    const med = (xs: number[]) => median(xs.filter(Number.isFinite));
    out.push({ size, rounds, ours: med(rounds.map((r) => r.ours)), warm: med(rounds.map((r) => r.warm)) });
  }
  return out;
}

export function burstRatioTable(r: BurstRatio[]): string {
  const rows: (string | number)[][] = [
    ['burst', 'rounds', 'ours/fast p50: median (each round)', 'warm/fast p50: median (each round)'],
  ];
  for (const x of r) {
    const each = (k: 'ours' | 'warm') => x.rounds.map((y) => fmt(y[k], 2)).join(', ');
    rows.push([
      x.size,
      x.rounds.length,
      `${fmt(x.ours, 2)}x (${each('ours')})`,
      `${fmt(x.warm, 2)}x (${each('warm')})`,
    ]);
  }
  return table(rows);
}

/** A sentence on what runs out first at the largest burst, from the measured load. */
export function saturation(s: BurstSummary[]): string[] {
  if (!s.length) return [];
  const biggest = Math.max(...s.map((b) => b.size));
  const lines: string[] = [];
  for (const b of s.filter((x) => x.size === biggest)) {
    const top = Object.entries(b.load.cpuAvgPct)
      .filter(([, v]) => Number.isFinite(v))
      .sort((x, y) => y[1] - x[1])
      .slice(0, 4)
      .map(([k, v]) => `${k} ${fmt(v)}%`)
      .join(', ');
    const small = s.find((x) => x.side === b.side && x.size === Math.min(...s.map((y) => y.size)));
    const grow = (k: string) => `${k} ${fmt(small?.phases[k] ?? NaN)} → ${fmt(b.phases[k])} ms`;
    const rest = Object.entries(b.load.restByCommand)
      .slice(0, 5)
      .map(([k, v]) => `${k} ${fmt(v)}%`)
      .join(', ');
    lines.push(
      `burst ${b.size} ${b.side}: node CPU busy ${fmt(b.load.nodeBusyAvgPct)}% on average (peak ${fmt(b.load.nodeBusyPeakPct)}%; ` +
        `${fmt(b.baseline.nodeBusyAvgPct)}% in the 3 s before, rest of node ${fmt(b.baseline.cpuAvgPct['rest of node'] ?? NaN)}% then) of ` +
        `${b.load.cores} cores; top CPU users (% of one core): ${top}; medians from burst ${small?.size}: ` +
        `${grow('call→started')}, ${grow('started→jobCreated')}, ${grow('jobCreated→podScheduled')}, ` +
        `${grow('podScheduled→containerStarted')}, ${grow('containerFinished→outputCollected')}, ${grow('outputCollected→result')}; ` +
        `the rest of the node by command: ${rest}`,
    );
  }
  return lines;
}

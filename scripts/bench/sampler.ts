/**
 * Watches the machine while a burst runs: node CPU from /proc/stat, the CPU of each stack process (PIDs from
 * .stack/pids/*.pid) and of this process from /proc/<pid>/stat, all sandbox pods together from the kubepods cgroup,
 * and this process's RSS. Linux only; a missing file just leaves its numbers out.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const CLK_TCK = 100;
const KUBEPODS_CPUACCT = [
  '/sys/fs/cgroup/cpuacct/kubepods/cpuacct.usage',
  '/sys/fs/cgroup/cpu,cpuacct/kubepods/cpuacct.usage',
];

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Busy and total jiffies of all CPUs. */
function nodeCpu(): { busy: number; total: number } | undefined {
  const line = read('/proc/stat')?.split('\n')[0];
  if (!line?.startsWith('cpu ')) return undefined;
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = v[3] + v[4];
  return { busy: total - idle, total };
}

/** The node's busy CPU over the next `ms`, in % of all its cores. */
export async function nodeBusyPct(ms = 1000): Promise<number> {
  const a = nodeCpu();
  await new Promise((r) => setTimeout(r, ms));
  const b = nodeCpu();
  return a && b && b.total > a.total ? (100 * (b.busy - a.busy)) / (b.total - a.total) : NaN;
}

/** utime + stime of a process, in ms. */
function procCpuMs(pid: number): number | undefined {
  const s = read(`/proc/${pid}/stat`);
  if (!s) return undefined;
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/**
 * CPU of every process on the node outside the named PIDs and outside the pods' cgroups, summed by command name
 * (comm) since `sinceTicks` (clock ticks since boot): shows what the "rest of the node" is (containerd-shim-runsc-v1
 * and runsc calls, CNI plugins, other users' processes, kernel threads). A process that exits between two samples
 * loses its last interval; one that lives less than an interval is missed.
 */
class ProcScan {
  private readonly last = new Map<number, { ms: number; skip: boolean }>();
  readonly byComm = new Map<string, number>();
  constructor(
    private readonly sinceTicks: number,
    private readonly exclude: Set<number>,
  ) {}
  sample(): void {
    let pids: string[];
    try {
      pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
    } catch {
      return;
    }
    for (const d of pids) {
      const pid = Number(d);
      const st = read(`/proc/${d}/stat`);
      if (!st) continue;
      const comm = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
      let known = this.last.get(pid);
      if (!known) {
        const skip = this.exclude.has(pid) || /\/kubepods/.test(read(`/proc/${d}/cgroup`) ?? '');
        known = { ms: Number(f[19]) >= this.sinceTicks ? 0 : ms, skip };
      }
      if (!known.skip && ms > known.ms) this.byComm.set(comm, (this.byComm.get(comm) ?? 0) + ms - known.ms);
      this.last.set(pid, { ms, skip: known.skip });
    }
  }
  total(comms: string[]): number {
    return comms.reduce((a, c) => a + (this.byComm.get(c) ?? 0), 0);
  }
}

const RUNTIME_COMMS = ['containerd-shim', 'runsc'];

function uptimeTicks(): number {
  return Number((read('/proc/uptime') ?? '0').split(' ')[0]) * CLK_TCK;
}

function kubepodsCpuMs(): number | undefined {
  for (const f of KUBEPODS_CPUACCT) {
    const s = read(f);
    if (s) return Number(s.trim()) / 1e6;
  }
  return undefined;
}

export function stackPids(stackDir: string): Record<string, number> {
  const dir = path.join(stackDir, 'pids');
  const out: Record<string, number> = {};
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.pid')) continue;
    const pid = Number(read(path.join(dir, f))?.trim());
    if (pid > 0 && existsSync(`/proc/${pid}`)) out[f.replace(/\.pid$/, '')] = pid;
  }
  return out;
}

interface Snapshot {
  at: number;
  node?: { busy: number; total: number };
  procs: Record<string, number | undefined>;
}

export interface LoadReport {
  seconds: number;
  cores: number;
  /** Node CPU busy, % of all cores: over the whole window, and the busiest sampling interval. */
  nodeBusyAvgPct: number;
  nodeBusyPeakPct: number;
  /** CPU of each process (and 'pods' = every sandbox pod, from the kubepods cgroup), % of one core. */
  cpuAvgPct: Record<string, number>;
  cpuPeakPct: Record<string, number>;
  /** CPU seconds each used over the window. */
  cpuSeconds: Record<string, number>;
  rssStartMiB: number;
  rssPeakMiB: number;
  /** The rest of the node by command name (top 8), % of one core; processes shorter than a sample are missed. */
  restByCommand: Record<string, number>;
}

export class Sampler {
  private readonly snaps: Snapshot[] = [];
  private timer?: NodeJS.Timeout;
  private rssStart = 0;
  private rssPeak = 0;
  private readonly pids: Record<string, number>;
  private scan?: ProcScan;

  /** `processes`: the processes besides the stack's to follow by name (default: this one, worker and client). */
  constructor(
    stackDir: string,
    private readonly intervalMs = 500,
    processes: Record<string, number> = { 'bench (worker+client)': process.pid },
  ) {
    this.pids = { ...stackPids(stackDir), ...processes };
  }

  private snap(): void {
    const procs: Record<string, number | undefined> = {};
    for (const [name, pid] of Object.entries(this.pids)) procs[name] = procCpuMs(pid);
    procs['sandbox pods'] = kubepodsCpuMs();
    this.scan?.sample();
    procs['runsc shims'] = this.scan?.total(RUNTIME_COMMS);
    this.snaps.push({ at: Date.now(), node: nodeCpu(), procs });
    this.rssPeak = Math.max(this.rssPeak, process.memoryUsage().rss);
  }

  start(): this {
    this.scan = new ProcScan(uptimeTicks(), new Set(Object.values(this.pids)));
    this.rssStart = process.memoryUsage().rss;
    this.rssPeak = this.rssStart;
    this.snap();
    this.timer = setInterval(() => this.snap(), this.intervalMs);
    return this;
  }

  stop(): LoadReport {
    clearInterval(this.timer);
    this.snap();
    const s = this.snaps;
    const first = s[0];
    const last = s[s.length - 1];
    const seconds = (last.at - first.at) / 1000;
    const pct = (a?: { busy: number; total: number }, b?: { busy: number; total: number }) =>
      a && b && b.total > a.total ? (100 * (b.busy - a.busy)) / (b.total - a.total) : NaN;
    let nodePeak = NaN;
    const cpuPeakPct: Record<string, number> = {};
    for (let i = 1; i < s.length; i++) {
      const p = pct(s[i - 1].node, s[i].node);
      if (!(p <= nodePeak)) nodePeak = p;
      const dt = s[i].at - s[i - 1].at;
      if (dt <= 0) continue;
      for (const k of Object.keys(s[i].procs)) {
        const a = s[i - 1].procs[k];
        const b = s[i].procs[k];
        if (a === undefined || b === undefined) continue;
        cpuPeakPct[k] = Math.max(cpuPeakPct[k] ?? 0, (100 * (b - a)) / dt);
      }
    }
    const cpuAvgPct: Record<string, number> = {};
    const cpuSeconds: Record<string, number> = {};
    for (const k of Object.keys(last.procs)) {
      const a = first.procs[k];
      const b = last.procs[k];
      if (a === undefined || b === undefined) continue;
      cpuSeconds[k] = (b - a) / 1000;
      cpuAvgPct[k] = seconds > 0 ? (100 * (b - a)) / 1000 / seconds : NaN;
    }
    // Whatever else the node ran (other users' tests, the shims): busy core-% minus what is accounted for above.
    const cores = nodeCores();
    const busyCorePct = pct(first.node, last.node) * cores;
    const named = Object.values(cpuAvgPct).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
    if (Number.isFinite(busyCorePct)) cpuAvgPct['rest of node'] = Math.max(0, busyCorePct - named);
    return {
      seconds,
      cores,
      nodeBusyAvgPct: pct(first.node, last.node),
      nodeBusyPeakPct: nodePeak,
      cpuAvgPct,
      cpuPeakPct,
      cpuSeconds,
      restByCommand: Object.fromEntries(
        [...(this.scan?.byComm ?? new Map<string, number>())]
          .filter(([c]) => !RUNTIME_COMMS.includes(c))
          .sort((a, b) => b[1] - a[1])
          .slice(0, 8)
          .map(([c, ms]) => [c, seconds > 0 ? ms / 10 / seconds : NaN]),
      ),
      rssStartMiB: this.rssStart / 2 ** 20,
      rssPeakMiB: this.rssPeak / 2 ** 20,
    };
  }
}

export function nodeCores(): number {
  return (read('/proc/stat') ?? '').split('\n').filter((l) => /^cpu\d+ /.test(l)).length;
}

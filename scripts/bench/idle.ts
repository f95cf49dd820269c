/**
 * What a ready warm pod costs while it waits: CPU and memory of its pod cgroup (the gVisor sandbox and the waiting
 * launcher inside it), sampled over a few seconds. cgroup v1 (cpuacct, memory) or v2, cgroupfs driver paths.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Kube } from '../../activities/kube';
import { claimable, poolRef, poolSelector } from '../../core/pool';
import type { BenchWorker } from './ours';
import { DEFAULT_LANGUAGE } from '../../core/languages';

export interface IdleCost {
  pods: number;
  seconds: number;
  cpuMilliCoresPerPod: number;
  memoryMiBPerPod: number;
  workingSetMiBPerPod: number;
  note?: string;
}

const QOS = ['burstable', 'besteffort', ''];

function podDir(controller: string, uid: string): string | undefined {
  for (const root of [
    `/sys/fs/cgroup/${controller}/kubepods`,
    '/sys/fs/cgroup/kubepods',
    '/sys/fs/cgroup/kubepods.slice',
  ]) {
    for (const qos of QOS) {
      const dir = path.join(root, qos, `pod${uid}`);
      if (existsSync(dir)) return dir;
    }
  }
  return undefined;
}

const num = (file: string): number => Number(readFileSync(file, 'utf8').trim());

function cpuNs(uid: string): number | undefined {
  const v1 = podDir('cpuacct', uid) ?? podDir('cpu,cpuacct', uid);
  if (v1 && existsSync(path.join(v1, 'cpuacct.usage'))) return num(path.join(v1, 'cpuacct.usage'));
  const v2 = podDir('', uid);
  const stat = v2 && path.join(v2, 'cpu.stat');
  if (stat && existsSync(stat)) return Number(/usage_usec (\d+)/.exec(readFileSync(stat, 'utf8'))?.[1] ?? NaN) * 1000;
  return undefined;
}

function memory(uid: string): { usage: number; workingSet: number } | undefined {
  const v1 = podDir('memory', uid);
  if (v1 && existsSync(path.join(v1, 'memory.usage_in_bytes'))) {
    const usage = num(path.join(v1, 'memory.usage_in_bytes'));
    const inactive = Number(
      /total_inactive_file (\d+)/.exec(readFileSync(path.join(v1, 'memory.stat'), 'utf8'))?.[1] ?? 0,
    );
    return { usage, workingSet: usage - inactive };
  }
  const v2 = podDir('', uid);
  if (v2 && existsSync(path.join(v2, 'memory.current'))) {
    const usage = num(path.join(v2, 'memory.current'));
    const inactive = Number(/inactive_file (\d+)/.exec(readFileSync(path.join(v2, 'memory.stat'), 'utf8'))?.[1] ?? 0);
    return { usage, workingSet: usage - inactive };
  }
  return undefined;
}

export async function idlePodCost(kube: Kube, w: BenchWorker, launcherSource: string, ms: number): Promise<IdleCost> {
  const pool = poolRef(w.config.temporal.taskQueue, DEFAULT_LANGUAGE, w.config.policy, launcherSource);
  const list = await kube.core.listNamespacedPod({
    namespace: w.config.policy.namespace,
    labelSelector: poolSelector(pool, 'ready'),
  });
  const uids = list.items
    .filter((p) => claimable(p, pool))
    .map((p) => p.metadata!.uid!)
    .filter((uid) => cpuNs(uid) !== undefined);
  if (!uids.length)
    return {
      pods: 0,
      seconds: ms / 1000,
      cpuMilliCoresPerPod: NaN,
      memoryMiBPerPod: NaN,
      workingSetMiBPerPod: NaN,
      note: 'no ready pod with a readable cgroup',
    };
  const before = uids.map((u) => cpuNs(u)!);
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, ms));
  const elapsedNs = Number(process.hrtime.bigint() - t0);
  const after = uids.map((u) => cpuNs(u) ?? NaN);
  const mem = uids.map((u) => memory(u));
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    pods: uids.length,
    seconds: ms / 1000,
    cpuMilliCoresPerPod: avg(after.map((a, i) => ((a - before[i]) / elapsedNs) * 1000)),
    memoryMiBPerPod: avg(mem.map((m) => (m?.usage ?? NaN) / 2 ** 20)),
    workingSetMiBPerPod: avg(mem.map((m) => (m?.workingSet ?? NaN) / 2 ** 20)),
  };
}

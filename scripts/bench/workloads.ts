/** The programs the benchmark runs, each with a check that its result is right. */
import type { ExecutionInput } from '../../core/types';

export interface Workload {
  key: string;
  label: string;
  input: ExecutionInput;
  /** True when stdout (captured text and total bytes) is what the program should have produced. */
  check: (stdout: string, stdoutTotalBytes: number) => boolean;
}

const ONE_MB = 1024 * 1024;

export const WORKLOADS: Workload[] = [
  {
    key: 'print',
    label: 'print(1)',
    input: { code: 'print(1)\n', timeoutSeconds: 30 },
    check: (out) => out === '1\n',
  },
  {
    key: 'sleep2',
    label: 'sleep 2 s',
    input: { code: 'import time\ntime.sleep(2)\nprint("slept")\n', timeoutSeconds: 30 },
    check: (out) => out === 'slept\n',
  },
  {
    key: 'out1mb',
    label: '1 MB stdout',
    input: { code: `import sys\nsys.stdout.write("x" * ${ONE_MB})\nsys.stdout.flush()\n`, timeoutSeconds: 30 },
    // The stdout cap (64 KiB by default) keeps the first bytes; the launcher still counts all of them.
    check: (out, total) => total === ONE_MB && out.length > 0 && /^x+$/.test(out),
  },
];

export function workload(key: string): Workload {
  const w = WORKLOADS.find((x) => x.key === key);
  if (!w) throw new Error(`unknown workload ${key} (one of ${WORKLOADS.map((x) => x.key).join(', ')})`);
  return w;
}

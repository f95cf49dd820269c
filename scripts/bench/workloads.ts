/** The programs the benchmark runs, each with a check that its result is right. */
import type { ExecutionInput } from '../../core/types';

export interface Workload {
  key: string;
  label: string;
  input: ExecutionInput;
  /** True when stdout (captured text and total bytes) is what the program should have produced. */
  check: (stdout: string, stdoutTotalBytes: number) => boolean;
  /** The same work done another way: the report gives the ratio of their in-sandbox run times (durationMs). */
  twin?: string;
}

const ONE_MB = 1024 * 1024;
const PRINT_LINES = 200_000;
/** Lines of "x": the stdout cap keeps the first of them, the launcher counts all. */
const printedLines = (out: string, total: number) => total === PRINT_LINES * 2 && /^(x\n)+$/.test(out);

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
  {
    key: 'printloop',
    label: 'print loop',
    // One write per line, as a program that prints in a loop does.
    input: {
      code: `import sys\nfor _ in range(${PRINT_LINES}):\n    sys.stdout.write("x\\n")\n`,
      timeoutSeconds: 120,
    },
    check: printedLines,
    twin: 'printloopbuffered',
  },
  {
    key: 'printloopbuffered',
    label: 'print loop, 64 KiB buffer',
    // The same loop into a stdout the program buffers itself: what printing costs with no flushing at all.
    input: {
      code:
        'import io, sys\n' +
        'sys.stdout = io.TextIOWrapper(open(1, "wb", buffering=1 << 16, closefd=False))\n' +
        `for _ in range(${PRINT_LINES}):\n    sys.stdout.write("x\\n")\n` +
        'sys.stdout.flush()\n',
      timeoutSeconds: 120,
    },
    check: printedLines,
  },
];

export function workload(key: string): Workload {
  const w = WORKLOADS.find((x) => x.key === key);
  if (!w) throw new Error(`unknown workload ${key} (one of ${WORKLOADS.map((x) => x.key).join(', ')})`);
  return w;
}

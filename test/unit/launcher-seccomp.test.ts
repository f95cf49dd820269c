/**
 * The launcher's seccomp filter, on this machine's kernel (the same filter runs under gVisor in the hostile suite):
 * the program's attempts at namespaces, mounts, ptrace, signals to its launcher, keyrings, bpf, perf, userfaultfd and
 * io_uring fail with EPERM (clone3 with ENOSYS, so libc falls back to clone), while threads, fork and subprocesses
 * work as usual.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseLauncherLog } from '../../core/output';
import { SECCOMP_EXPECTED, SECCOMP_PROBE } from '../fixtures/sandbox/seccomp';
import { coldLauncherArgs } from '../helpers/launcher';

let dir: string;
beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'ds-seccomp-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

test('each refused call fails with the filter errno; ordinary process work still succeeds', () => {
  const r = spawnSync(
    'python3',
    coldLauncherArgs(dir, {
      command: ['python3', SECCOMP_PROBE],
      timeoutSeconds: 20,
      stdoutCap: 65536,
      stderrCap: 65536,
    }),
    { encoding: 'latin1', timeout: 30_000 },
  );
  const parsed = parseLauncherLog(r.stdout, { stdoutCapBytes: 65536, stderrCapBytes: 65536 });
  expect(parsed.stderr.text).toBe('');
  expect(parsed.trailer).toMatchObject({ exitCode: 0, error: null });
  expect(JSON.parse(parsed.stdout.text)).toEqual(SECCOMP_EXPECTED);
});

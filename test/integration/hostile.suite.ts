/**
 * Hostile programs, run through the real worker and client on the real stack (gVisor, the worker's own RBAC). Each
 * case asserts the exact typed result and that nothing of the execution is left in the cluster; the cases that
 * exhaust something also show that a benign program still runs afterwards. What each layer stops is described in
 * SECURITY.md. The suite runs twice: on cold sandboxes (hostile.test.ts) and on warm pool pods
 * (hostile-warm.test.ts), where every case that fits the pool must really have run in a pool pod.
 */
import os from 'node:os';
import { PassThrough } from 'node:stream';
import { Exec, type V1Node } from '@kubernetes/client-node';
import { CONTAINER_NAME } from '../../core/manifests';
import {
  DEFAULT_LANGUAGE,
  InvalidInputError,
  LANGUAGE_NAMES,
  type ExecutionInput,
  type ExecutionResult,
  type Language,
} from '../../client';
import { HARD_LIMITS } from '../../core/policy';
import { fitsPool } from '../../core/pool';
import { readFileSync } from 'node:fs';
import { validateInput } from '../../core/validate';
import { SECCOMP_EXPECTED, SECCOMP_PROBE } from '../fixtures/sandbox/seccomp';
import {
  adminKube,
  eventually,
  JobRecorder,
  leftovers,
  leftoversAfterCompletion,
  NOTHING_LEFT,
  poolHasReady,
  SANDBOX_NAMESPACE,
  startWorker,
  whenRunning,
  uniqueId,
  type TestWorker,
} from '../helpers/stack';

export function hostileSuite(mode: 'cold' | 'warm'): void {
  jest.setTimeout(90_000);
  const kube = adminKube();
  const jobs = new JobRecorder();
  let w: TestWorker;
  /** Every execution this file started, checked once more at the end. */
  const started: string[] = [];

  /**
   * 300 MiB into the 256Mi scratch emptyDir, then wait for the kubelet to notice. The kubelet measures emptyDir usage
   * only every so often (the eviction came 10-60 s after the writes here), so this execution starts first and runs
   * beside the other cases; its test, near the end, waits for it.
   */
  const SCRATCH_FILL = `
import os, time
chunk = b"x" * (1 << 20)
with open("/tmp/fill", "wb") as f:
    for _ in range(300):
        f.write(chunk)
    f.flush()
    os.fsync(f.fileno())
print("wrote 300 MiB", flush=True)
time.sleep(300)
print("not evicted")
`;
  let scratchFill: Promise<ExecutionResult>;

  beforeAll(async () => {
    await jobs.start(kube);
    w = await startWorker(mode === 'warm' ? { DS_WARM_POOL_SIZE: '3', DS_WARM_POOL_SIZE_JAVASCRIPT: '1' } : {});
    // The scratch-filling run below goes on beside the first cases: with the pool full, it cannot take the one
    // ready pod the first case saw (that case would then run cold, and fail its warm check).
    if (mode === 'warm') await poolHasReady(w, 'python', 120_000, 3);
    scratchFill = run(SCRATCH_FILL, { timeoutSeconds: 180 });
    scratchFill.catch(() => undefined);
  }, 120_000);
  afterAll(async () => {
    jobs.stop();
    await w?.stop();
  });

  /** Until the pool has a pod a claim can take (a claim reads the apiserver's watch cache, which may lag a moment). */
  async function warmPodReady(language: Language): Promise<void> {
    await poolHasReady(w, language);
    await new Promise((r) => setTimeout(r, 500));
  }

  async function run(code: string, extra: Partial<ExecutionInput> = {}): Promise<ExecutionResult> {
    const executionId = uniqueId(`hostile-${mode}`);
    started.push(executionId);
    const input = { code, ...extra };
    const warm = mode === 'warm' && fitsPool(validateInput(input, w.config.policy), w.config.policy);
    if (warm) await warmPodReady(input.language ?? DEFAULT_LANGUAGE);
    const result = await w.client.executeCode(input, { executionId });
    expect(result.executionId).toBe(executionId);
    // On warm sandboxes, the case must really have run in a pool pod (a request the pool does not fit runs cold).
    expect(result.sandbox).toBe(warm ? 'warm' : 'cold');
    expect(await leftoversAfterCompletion(kube, w.client, executionId)).toEqual(NOTHING_LEFT);
    expect(jobs.jobsFor(executionId)).toBe(result.sandbox === 'warm' ? 0 : result.attempts);
    // Whatever the program did, the result is a small, well-formed payload.
    expect(Buffer.byteLength(JSON.stringify(result))).toBeLessThan(512 * 1024);
    return result;
  }

  /** A plain program still runs, on the same node, after a hostile one. */
  async function benignStillRuns(): Promise<void> {
    const r = await run('print(6 * 7)', { timeoutSeconds: 30 });
    expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stdout: '42\n', stderr: '', attempts: 1 });
  }

  /** How long the program ran, by the launcher's clock (falls back to the watch's observations). */
  function ranMs(r: ExecutionResult): number {
    const at = (p: string) => r.timeline.find((e) => e.phase === p)!.at;
    return at('containerFinished') - at('containerStarted');
  }

  /** Lines "key value" (value is JSON) printed by a probe program. */
  function report(r: ExecutionResult): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const line of r.stdout.split('\n').filter(Boolean)) {
      const i = line.indexOf(' ');
      out[line.slice(0, i)] = JSON.parse(line.slice(i + 1));
    }
    return out;
  }

  let node: V1Node | undefined;
  async function theNode(): Promise<V1Node> {
    node ??= (await kube.core.listNode()).items[0];
    return node;
  }

  describe('CPU', () => {
    test('an infinite loop is timed_out at its deadline', async () => {
      const r = await run('print("spinning", flush=True)\nwhile True:\n    pass', { timeoutSeconds: 3 });
      expect(r).toMatchObject({ status: 'timed_out', exitCode: null, stdout: 'spinning\n', attempts: 1 });
      expect(ranMs(r)).toBeGreaterThanOrEqual(3000);
      expect(ranMs(r)).toBeLessThan(6000);
      await benignStillRuns();
    });

    test('four busy processes under limits.cpu 500m get no more than the limit', async () => {
      const code = `
import json, os, time
start = time.time()
pids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        end = time.time() + 4
        while time.time() < end:
            pass
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
t = os.times()
print("wall", json.dumps(time.time() - start))
print("cpu", json.dumps(t.children_user + t.children_system))
`;
      const r = await run(code, { timeoutSeconds: 30, limits: { cpu: '500m' } });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0 });
      const { wall, cpu } = report(r) as { wall: number; cpu: number };
      expect(wall).toBeGreaterThanOrEqual(4);
      expect(cpu).toBeGreaterThan(0);
      // Unthrottled, four busy processes on two cores would use ~2 CPU-seconds per second.
      expect(cpu / wall).toBeLessThanOrEqual(0.75);
      console.log(
        `4 busy processes at 500m: ${cpu.toFixed(2)} CPU-s in ${wall.toFixed(2)} s (${(cpu / wall).toFixed(2)})`,
      );
    });
  });

  describe('memory', () => {
    test('allocating past the limit is oom_killed', async () => {
      const code = 'import time\nx = []\nwhile True:\n    x.append(bytearray(8 * 1024 * 1024))';
      const r = await run(code, { timeoutSeconds: 30, limits: { memory: '128Mi' } });
      expect(r).toMatchObject({ status: 'oom_killed', exitCode: null, attempts: 1 });
      await benignStillRuns();
    });
  });

  describe('processes', () => {
    test('a fork bomb is contained: fork fails with EAGAIN, the run ends, the node stays healthy', async () => {
      // Every process forks until fork fails (so the bomb is bounded by the limit, not by this code); the first one
      // then counts the processes it can see and reports.
      const code = `
import errno, json, os, time
root = os.getpid()
error = None
while True:
    try:
        pid = os.fork()
    except OSError as e:
        error = e
        break
if os.getpid() != root:
    time.sleep(60)
    os._exit(0)
time.sleep(1)
print("errno", json.dumps(errno.errorcode[error.errno]))
print("processes", json.dumps(sum(1 for p in os.listdir("/proc") if p.isdigit())))
`;
      // With the default 512Mi a bomb of Python processes runs out of memory first (oom_killed); with room to spare
      // the process limit is what stops it.
      const r = await run(code, { timeoutSeconds: 30, limits: { memory: '2Gi' } });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, attempts: 1 });
      const { errno, processes } = report(r) as { errno: string; processes: number };
      expect(errno).toBe('EAGAIN');
      // The launcher caps the sandbox user's tasks at 128 (RLIMIT_NPROC), far below the pod's 512 host PIDs.
      expect(processes).toBeGreaterThan(50);
      expect(processes).toBeLessThanOrEqual(128);
      console.log(`fork bomb: ${errno} with ${processes} processes in the container`);
      await benignStillRuns();
    });

    test('a program cannot signal its launcher (PID 1, same user): EPERM, and its run goes on', async () => {
      // gVisor would deliver the signal (Linux shields a namespace's init); the launcher's seccomp filter refuses it.
      const code = [
        'import errno, os, signal',
        'for sig in (signal.SIGKILL, signal.SIGSTOP):',
        '    for pid in (1, -1):',
        '        try:',
        '            os.kill(pid, sig)',
        '            print("delivered", flush=True)',
        '        except OSError as e:',
        '            print(pid, sig.name, errno.errorcode[e.errno], flush=True)',
        'print("still here")',
      ].join('\n');
      const r = await run(code, { timeoutSeconds: 30 });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stderr: '', attempts: 1 });
      expect(r.stdout).toBe('1 SIGKILL EPERM\n-1 SIGKILL EPERM\n1 SIGSTOP EPERM\n-1 SIGSTOP EPERM\nstill here\n');
    });
  });

  describe('JavaScript (Node.js): contained as Python is', () => {
    const js = (code: string, extra: Partial<ExecutionInput> = {}) => run(code, { language: 'javascript', ...extra });

    test('an infinite loop is timed_out at its deadline', async () => {
      const r = await js('console.log("spinning");\nfor (;;) {}', { timeoutSeconds: 3 });
      expect(r).toMatchObject({ status: 'timed_out', exitCode: null, stdout: 'spinning\n', attempts: 1 });
      expect(ranMs(r)).toBeGreaterThanOrEqual(3000);
      expect(ranMs(r)).toBeLessThan(6000);
      await benignStillRuns();
    });

    test('process.kill of the launcher (PID 1) or of every process (-1): EPERM, and its run goes on', async () => {
      const code = [
        'for (const sig of ["SIGKILL", "SIGSTOP"])',
        '  for (const pid of [1, -1]) {',
        '    try { process.kill(pid, sig); console.log("delivered"); }',
        '    catch (e) { console.log(pid, sig, e.code); }',
        '  }',
        'console.log("still here");',
      ].join('\n');
      const r = await js(code, { timeoutSeconds: 30 });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stderr: '', attempts: 1 });
      expect(r.stdout).toBe('1 SIGKILL EPERM\n-1 SIGKILL EPERM\n1 SIGSTOP EPERM\n-1 SIGSTOP EPERM\nstill here\n');
    });

    test('a fork bomb is contained: spawning fails with EAGAIN, the run ends, the node stays healthy', async () => {
      // Starts processes until the system refuses one (bounded by the limit, not by this code), then counts.
      const code = `
const { spawn } = require("node:child_process");
const fs = require("node:fs");
(async () => {
  let error;
  while (!error) {
    const child = spawn("sleep", ["60"], { stdio: "ignore" });
    error = await new Promise((resolve) => {
      child.once("spawn", () => resolve(undefined));
      child.once("error", (e) => resolve(e));
    });
  }
  console.log("errno", JSON.stringify(error.code));
  console.log("processes", JSON.stringify(fs.readdirSync("/proc").filter((p) => /^\\d+$/.test(p)).length));
  process.exit(0);
})();
`;
      const r = await js(code, { timeoutSeconds: 60, limits: { memory: '1Gi' } });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, attempts: 1 });
      const { errno, processes } = report(r) as { errno: string; processes: number };
      expect(errno).toBe('EAGAIN');
      expect(processes).toBeGreaterThan(50);
      expect(processes).toBeLessThanOrEqual(128);
      console.log(`javascript fork bomb: ${errno} with ${processes} processes in the container`);
      await benignStillRuns();
    });

    test('allocating past the limit is oom_killed', async () => {
      const code = 'const kept = [];\nfor (;;) kept.push(Buffer.alloc(8 * 1024 * 1024, 1));';
      const r = await js(code, { timeoutSeconds: 30, limits: { memory: '128Mi' } });
      expect(r).toMatchObject({ status: 'oom_killed', exitCode: null, attempts: 1 });
      await benignStillRuns();
    });

    test('the root filesystem and the code in /sandbox are read-only; no route to the apiserver', async () => {
      const n = await theNode();
      const nodeIp = n.status!.addresses!.find((a) => a.type === 'InternalIP')!.address;
      const code = `
const fs = require("node:fs");
const net = require("node:net");
for (const p of ["/etc/passwd", "/sandbox/main.js", "/usr/bin/node"]) {
  try { fs.appendFileSync(p, "x"); console.log(p, "written"); } catch (e) { console.log(p, e.code); }
}
const s = net.connect({ host: ${JSON.stringify(nodeIp)}, port: 6443 });
s.setTimeout(3000, () => { console.log("apiserver timeout"); process.exit(0); });
s.on("connect", () => { console.log("apiserver connected"); process.exit(0); });
s.on("error", (e) => { console.log("apiserver", e.code); process.exit(0); });
`;
      const r = await js(code, { timeoutSeconds: 30 });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stderr: '', attempts: 1 });
      const lines = r.stdout.trim().split('\n');
      expect(lines.slice(0, 3)).toEqual(
        ['/etc/passwd', '/sandbox/main.js', '/usr/bin/node'].map((p) => expect.stringMatching(`^${p} (EROFS|EACCES)$`)),
      );
      expect(lines[3]).toMatch(/^apiserver (ENETUNREACH|EHOSTUNREACH|timeout)$/);
      expect(lines[3]).not.toBe('apiserver connected');
    });
  });

  describe('the time limit, enforced from outside', () => {
    // Whatever becomes of the launcher, the sandbox is stopped within the time limit plus a few seconds of the
    // program's start: the run step deletes the pod when the launcher has not reported by then.
    const LIMIT = 3;
    const GRACE_MS = 5_000;
    /** From the program's start (as seen from outside) to the result in the caller's hand. */
    function elapsed(r: ExecutionResult, receivedAt: number): number {
      const started = r.timeline.find((e) => e.phase === 'containerStarted')?.at;
      expect(started).toBeDefined();
      return receivedAt - started!;
    }

    test('a launcher frozen from outside the program (SIGSTOP over exec) cannot keep it running: timed_out, output kept', async () => {
      // The program cannot stop its launcher (seccomp, below); a process exec'd into the container is not filtered.
      const code = 'import time\nprint("before", flush=True)\ntime.sleep(600)';
      const executionId = uniqueId(`hostile-${mode}`);
      started.push(executionId);
      const input = { code, timeoutSeconds: LIMIT };
      if (mode === 'warm') await warmPodReady('python');
      const pending = w.client.executeCode(input, { executionId });
      const pod = await whenRunning(kube, executionId);
      await eventually(
        () => w.client.getExecution(executionId),
        (s) => s.state === 'running' && (s.output?.stdout.text ?? '') === 'before\n',
      );
      const stderr: string[] = [];
      const errStream = new PassThrough().on('data', (d: Buffer) => stderr.push(d.toString()));
      await new Promise<void>((resolve, reject) => {
        void new Exec(kube.config)
          .exec(
            SANDBOX_NAMESPACE,
            pod,
            CONTAINER_NAME,
            ['sh', '-c', 'kill -STOP 1'],
            null,
            errStream,
            null,
            false,
            (status) =>
              status.status === 'Success'
                ? resolve()
                : reject(new Error(`exec: ${JSON.stringify(status)} ${stderr.join('')}`)),
          )
          .catch(reject);
      });
      const r = await pending;
      const receivedAt = Date.now();
      expect(r).toMatchObject({ status: 'timed_out', exitCode: null, stdout: 'before\n', sandbox: mode });
      expect(elapsed(r, receivedAt)).toBeLessThan(LIMIT * 1000 + GRACE_MS);
      expect(await leftoversAfterCompletion(kube, w.client, executionId)).toEqual(NOTHING_LEFT);
    });

    test.each([
      ['SIGSTOPs', 'os.kill(1, signal.SIGSTOP)'],
      ['SIGKILLs', 'os.kill(1, signal.SIGKILL)'],
      [
        'ptraces',
        'import ctypes; ctypes.set_errno(0); ctypes.CDLL(None, use_errno=True).ptrace(16, 1, None, None); raise OSError(ctypes.get_errno(), "ptrace")',
      ],
    ])('a program that %s its launcher is refused (EPERM) and timed out as usual', async (_what, attack) => {
      const code = [
        'import errno, os, signal, time',
        'try:',
        `    ${attack}`,
        '    print("done", flush=True)',
        'except OSError as e:',
        '    print(errno.errorcode.get(e.errno, e.errno), flush=True)',
        'time.sleep(600)',
      ].join('\n');
      const r = await run(code, { timeoutSeconds: LIMIT });
      const receivedAt = Date.now();
      expect(r).toMatchObject({ status: 'timed_out', exitCode: null, stdout: 'EPERM\n' });
      expect(elapsed(r, receivedAt)).toBeLessThan(LIMIT * 1000 + GRACE_MS);
    });
  });

  describe('seccomp', () => {
    test('namespaces, mounts, ptrace, signals to the launcher, keyrings, bpf, perf, io_uring: EPERM; normal work runs', async () => {
      const r = await run(readFileSync(SECCOMP_PROBE, 'utf8'), { timeoutSeconds: 30 });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stderr: '' });
      expect(JSON.parse(r.stdout)).toEqual(SECCOMP_EXPECTED);
    });

    test('numpy with its threads still works under the filter', async () => {
      const code =
        'import numpy as np\na = np.arange(1_000_000, dtype=np.float64)\nprint(int(a.sum()), np.linalg.norm(np.eye(3)))';
      const r = await run(code, { timeoutSeconds: 60 });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stdout: '499999500000 1.7320508075688772\n' });
    });
  });

  describe('disk', () => {
    test('the root filesystem and the code in /sandbox are read-only to the program', async () => {
      const code = `
import errno, json
for path in ["/evil", "/var/tmp/evil", "/sandbox/evil", "/sandbox/main.py", "/tmp/ok"]:
    try:
        with open(path, "w") as f:
            f.write("x")
        result = "written"
    except OSError as e:
        result = errno.errorcode[e.errno]
    print(path, json.dumps(result))
`;
      const r = await run(code, { timeoutSeconds: 30 });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0 });
      expect(report(r)).toEqual({
        // "/" belongs to root: the non-root user is refused before the read-only mount is even consulted.
        '/evil': 'EACCES',
        // World-writable on the image, but the root filesystem is mounted read-only.
        '/var/tmp/evil': 'EROFS',
        // Cold: the code's ConfigMap, mounted read-only. Warm: the directory the launcher wrote the task into; the
        // program may add files there (its own sandbox, used once), not change the code or its input files.
        '/sandbox/evil': mode === 'warm' ? 'written' : 'EROFS',
        '/sandbox/main.py': 'EACCES',
        '/tmp/ok': 'written',
      });
    });
  });

  describe('output', () => {
    test('100 MB of stdout is capped and flagged; the result is delivered', async () => {
      const code =
        'import sys\nchunk = b"z" * (1 << 20)\nfor _ in range(100):\n    sys.stdout.buffer.write(chunk)\nsys.stdout.flush()\nprint("done", file=sys.stderr)';
      const r = await run(code, { timeoutSeconds: 60 });
      const cap = w.config.policy.stdoutCapBytes;
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stderr: 'done\n' });
      expect(r.stdoutInfo).toEqual({ totalBytes: 100 * 1024 * 1024, capturedBytes: cap, truncated: true });
      expect(r.stdout).toBe('z'.repeat(cap));
      await benignStillRuns();
    });

    test('one 3 MiB line without a newline is capped and flagged', async () => {
      const r = await run('import sys\nsys.stdout.write("y" * (3 * 1024 * 1024))', { timeoutSeconds: 30 });
      const cap = w.config.policy.stdoutCapBytes;
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stderr: '' });
      expect(r.stdoutInfo).toEqual({ totalBytes: 3 * 1024 * 1024, capturedBytes: cap, truncated: true });
      expect(r.stdout).toBe('y'.repeat(cap));
    });

    test('binary and invalid UTF-8 arrive as text with replacement characters', async () => {
      const code =
        'import os\nos.write(1, bytes(range(256)) * 4)\nos.write(1, b"\\xff\\xfe\\xc0 end")\nos.write(2, b"\\x80err")';
      const r = await run(code, { timeoutSeconds: 30 });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stderr: '\uFFFDerr' });
      expect(r.stdoutInfo).toEqual({ totalBytes: 1024 + 7, capturedBytes: 1024 + 7, truncated: false });
      expect(r.stdout.startsWith('\u0000\u0001\u0002')).toBe(true);
      expect(r.stdout).toContain('ABCDEFGHIJ');
      expect(r.stdout.endsWith('\uFFFD\uFFFD\uFFFD end')).toBe(true);
    });

    test('interleaved stdout and stderr stay apart and in order', async () => {
      const code =
        'import sys\nfor i in range(2000):\n    print("o%d" % i, flush=True)\n    print("e%d" % i, file=sys.stderr, flush=True)';
      const r = await run(code, { timeoutSeconds: 30 });
      const lines = (p: string) => Array.from({ length: 2000 }, (_, i) => `${p}${i}\n`).join('');
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stdout: lines('o'), stderr: lines('e') });
      expect(r.stdoutInfo.truncated).toBe(false);
      expect(r.stderrInfo.truncated).toBe(false);
    });

    test('writing after closing stdout fails in the program; what came before and stderr are kept', async () => {
      const code = `
import errno, os, sys
print("before", flush=True)
os.close(1)
try:
    os.write(1, b"after\\n")
except OSError as e:
    print("after close:", errno.errorcode[e.errno], file=sys.stderr, flush=True)
`;
      const r = await run(code, { timeoutSeconds: 30 });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stdout: 'before\n', stderr: 'after close: EBADF\n' });
      expect(r.stdoutInfo).toEqual({ totalBytes: 7, capturedBytes: 7, truncated: false });
    });
  });

  describe('privilege', () => {
    test('non-root, no capabilities, no service-account token, no cluster variables, launcher out of reach', async () => {
      const code = `
import errno, json, os
print("uid", json.dumps([os.getuid(), os.geteuid(), os.getgid(), os.getegid()]))
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
print("caps", json.dumps({k: status[k].strip() for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"]}))
hits = []
for root, dirs, files in os.walk("/", onerror=lambda e: None):
    if root == "/":
        dirs[:] = [d for d in dirs if d not in ("proc", "sys")]
    hits += [os.path.join(root, d) for d in dirs if d == "serviceaccount" or d == "secrets"]
    hits += [os.path.join(root, f) for f in files if f == "token"]
print("tokens", json.dumps(hits))
print("env", json.dumps(sorted(k for k in os.environ if k.startswith("KUBERNETES") or k.endswith("_SERVICE_HOST") or k.endswith("_SERVICE_PORT"))))
def attempt(path, mode):
    try:
        open(path, mode).close()
        return "opened"
    except OSError as e:
        return errno.errorcode[e.errno]
print("launcher", json.dumps({"environ": attempt("/proc/1/environ", "rb"), "stdout": attempt("/proc/1/fd/1", "wb")}))
`;
      const r = await run(code, { timeoutSeconds: 30 });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stderr: '' });
      expect(report(r)).toEqual({
        uid: [1001, 1001, 1001, 1001],
        caps: {
          CapInh: '0000000000000000',
          CapPrm: '0000000000000000',
          CapEff: '0000000000000000',
          CapBnd: '0000000000000000',
          CapAmb: '0000000000000000',
          NoNewPrivs: '1',
        },
        tokens: [],
        env: [],
        // The launcher (PID 1, same user) is not dumpable: the program can neither read its environment nor write
        // forged frames into the container log behind its back.
        launcher: { environ: 'EACCES', stdout: 'EACCES' },
      });
    });
  });

  describe('network', () => {
    test('no route to the apiserver, the kubelet or the outside; no cluster DNS', async () => {
      const n = await theNode();
      const nodeIp = n.status!.addresses!.find((a) => a.type === 'InternalIP')!.address;
      const apiService = await kube.core.readNamespacedService({ name: 'kubernetes', namespace: 'default' });
      const serviceIp = apiService.spec!.clusterIP!;
      const targets: [string, string, number][] = [
        ['apiserver', nodeIp, 6443],
        ['apiserverService', serviceIp, 443],
        ['kubelet', nodeIp, 10250],
        // Only a connect attempt; nothing is sent.
        ['outside', '1.1.1.1', 53],
      ];
      const code = `
import errno, json, socket
targets = json.loads(${JSON.stringify(JSON.stringify(targets))})
for name, host, port in targets:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, port))
        result = "connected"
    except socket.timeout:
        result = "timeout"
    except OSError as e:
        result = errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()
    print(name, json.dumps(result))
try:
    socket.getaddrinfo("kubernetes.default", 443)
    print("dns", json.dumps("resolved"))
except socket.gaierror as e:
    print("dns", json.dumps("gaierror"))
`;
      const r = await run(code, { timeoutSeconds: 60 });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0, stderr: '' });
      const seen = report(r);
      // Locally the pod has no route at all (ENETUNREACH); behind a NetworkPolicy packets are dropped (timeout).
      const unreachable = ['ENETUNREACH', 'EHOSTUNREACH', 'timeout'];
      for (const [name] of targets) expect(unreachable).toContain(seen[name]);
      expect(seen.dns).toBe('gaierror');
      console.log(`network probes (node ${nodeIp}, service ${serviceIp}): ${JSON.stringify(seen)}`);
    });
  });

  describe('escape hints', () => {
    test("the kernel is gVisor's and the memory shown is the limit, not the host's", async () => {
      const n = await theNode();
      const code = `
import json, os, subprocess
print("release", json.dumps(os.uname().release))
print("dmesg", json.dumps(subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()[:1]))
meminfo = open("/proc/meminfo").read()
print("memTotalKb", json.dumps(int(meminfo.split("MemTotal:")[1].split()[0])))
print("procText", json.dumps(meminfo + open("/proc/cpuinfo").read()))
`;
      const r = await run(code, { timeoutSeconds: 30, limits: { memory: '512Mi' } });
      expect(r).toMatchObject({ status: 'succeeded', exitCode: 0 });
      const { release, dmesg, memTotalKb, procText } = report(r) as {
        release: string;
        dmesg: string[];
        memTotalKb: number;
        procText: string;
      };
      expect(release).not.toBe(os.release());
      expect(release).not.toBe(n.status!.nodeInfo!.kernelVersion);
      expect(dmesg[0]).toMatch(/Starting gVisor/);
      expect(memTotalKb * 1024).toBeLessThanOrEqual(512 * 1024 * 1024);
      expect(memTotalKb * 1024).not.toBe(os.totalmem());
      const hostKb = [String(Math.floor(os.totalmem() / 1024)), n.status!.capacity!.memory.replace(/Ki$/, '')];
      for (const kb of hostKb) expect(procText).not.toContain(kb);
    });
  });

  describe('time', () => {
    test('a program that ignores SIGTERM still ends at its deadline', async () => {
      const code = `
import signal, time
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
print("ignoring", flush=True)
while True:
    time.sleep(0.1)
`;
      const r = await run(code, { timeoutSeconds: 3 });
      expect(r).toMatchObject({ status: 'timed_out', exitCode: null, stdout: 'ignoring\n', attempts: 1 });
      expect(ranMs(r)).toBeGreaterThanOrEqual(3000);
      expect(ranMs(r)).toBeLessThan(6000);
    });

    test('detached children (setsid, double fork) do not outlive the deadline', async () => {
      const code = `
import os, signal, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            print("detached alive", flush=True)
            time.sleep(0.5)
    os._exit(0)
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)
print("parent waiting", flush=True)
time.sleep(600)
`;
      const r = await run(code, { timeoutSeconds: 3 });
      expect(r).toMatchObject({ status: 'timed_out', exitCode: null, attempts: 1 });
      expect(r.stdout).toContain('parent waiting\n');
      expect(r.stdout).toContain('detached alive\n');
      expect(ranMs(r)).toBeGreaterThanOrEqual(3000);
      expect(ranMs(r)).toBeLessThan(6000);
      await benignStillRuns();
    });
  });

  describe('input limits', () => {
    const file = (name: string, content = 'x') => ({ name, content });
    const cases: [string, ExecutionInput, { field: string; limit: string }][] = [
      [
        'code over the size limit',
        { code: '#'.repeat(HARD_LIMITS.maxCodeBytes + 1) },
        { field: 'code', limit: 'max 256 KiB' },
      ],
      ['empty code', { code: '' }, { field: 'code', limit: 'non-empty' }],
      ['blank code', { code: ' \n\t\n' }, { field: 'code', limit: 'non-empty' }],
      [
        'unknown language',
        { code: 'puts 1', language: 'ruby' as never },
        { field: 'language', limit: `one of ${LANGUAGE_NAMES.join(', ')}` },
      ],
      [
        'an absurd timeout',
        { code: 'print(1)', timeoutSeconds: 10 ** 9 },
        { field: 'timeoutSeconds', limit: 'max 3600' },
      ],
      ['a zero timeout', { code: 'print(1)', timeoutSeconds: 0 }, { field: 'timeoutSeconds', limit: 'integer >= 1' }],
      [
        'a fractional timeout',
        { code: 'print(1)', timeoutSeconds: 1.5 },
        { field: 'timeoutSeconds', limit: 'integer >= 1' },
      ],
      ['an absurd CPU request', { code: 'print(1)', limits: { cpu: '1000' } }, { field: 'limits.cpu', limit: 'max 2' }],
      [
        'a CPU below the minimum',
        { code: 'print(1)', limits: { cpu: '1m' } },
        { field: 'limits.cpu', limit: 'min 10' },
      ],
      [
        'an absurd memory request',
        { code: 'print(1)', limits: { memory: '1000Ti' } },
        { field: 'limits.memory', limit: 'max 4Gi' },
      ],
      [
        'a memory that is no quantity',
        { code: 'print(1)', limits: { memory: 'all of it' } },
        { field: 'limits.memory', limit: 'quantity' },
      ],
      [
        'too much memory',
        { code: 'print(1)', limits: { memory: '64Gi' } },
        { field: 'limits.memory', limit: 'max 4Gi' },
      ],
      ['a file name with ..', { code: 'print(1)', files: [file('..')] }, { field: 'files[0].name', limit: 'charset' }],
      [
        'a file name climbing out',
        { code: 'print(1)', files: [file('../../etc/passwd')] },
        { field: 'files[0].name', limit: 'charset' },
      ],
      [
        'a file name with /',
        { code: 'print(1)', files: [file('ok.txt'), file('a/b')] },
        { field: 'files[1].name', limit: 'charset' },
      ],
      [
        'too many files',
        { code: 'print(1)', files: Array.from({ length: 21 }, (_, i) => file(`f${i}`)) },
        { field: 'files', limit: 'max 20 files' },
      ],
    ];

    test.each(cases)('%s: InvalidInputError from the client, nothing created', async (_name, input, expected) => {
      const executionId = uniqueId('hostile-bad');
      const err = await w.client.executeCode(input, { executionId }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect(err).toMatchObject(expected);
      await expect(w.client.handle(executionId).describe()).rejects.toThrow(/not found/i);
      expect(jobs.jobsFor(executionId)).toBe(0);
      expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
    });
  });

  describe('disk (started first, see SCRATCH_FILL)', () => {
    test('filling /tmp past the scratch limit is a typed, non-retried StorageLimitExceeded', async () => {
      expect(w.config.policy.scratchSize).toBe('256Mi');
      const r = await scratchFill;
      expect(r).toMatchObject({
        status: 'infra_error',
        exitCode: null,
        error: {
          reason: 'StorageLimitExceeded',
          message: 'Usage of EmptyDir volume "scratch" exceeds the limit "256Mi".',
          retryable: false,
        },
        attempts: 1,
      });
      // The kubelet removes an evicted pod's container, and its log with it, to reclaim the disk: the output is there
      // only if the worker read the log first.
      expect(['wrote 300 MiB\n', '']).toContain(r.stdout);
      console.log(
        `scratch fill: evicted after ${(ranMs(r) / 1000).toFixed(1)} s, output ${r.stdout ? 'kept' : 'lost'}`,
      );
      await benignStillRuns();
    }, 300_000);
  });

  test('after all of it, nothing of any execution of this file is left', async () => {
    expect(started.length).toBeGreaterThan(10);
    for (const id of started) expect(await leftovers(kube, id)).toEqual(NOTHING_LEFT);
  });
}

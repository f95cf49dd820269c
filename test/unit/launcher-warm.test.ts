/**
 * The real launcher in warm mode, on this machine: it takes exactly one whole, checksummed task from its stdin and
 * runs it; a task cut short or damaged runs nothing; bytes after the task are never read, so no second program can
 * be handed to a sandbox.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { frameTask } from '../../activities/task-frame';
import { parseLauncherLog } from '../../core/output';
import type { LauncherTask } from '../../core/launcher-protocol';
import { launcherTask } from '../../core/manifests';
import { MAX_TASK_BYTES, waitingLauncher } from '../../core/pool';
import { SANDBOX_DIR } from '../../core/languages';
import { LAUNCHER } from '../helpers/launcher';
import { compactLauncher } from '../../activities/launcher-program';
import { DEFAULT_POLICY } from '../../core/policy';
import { validateInput } from '../../core/validate';

const caps = { stdoutCapBytes: 4096, stderrCapBytes: 4096 };
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ds-warm-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function task(code: string, extra: Partial<LauncherTask> = {}): LauncherTask {
  const request = validateInput(
    { code, files: [{ name: 'data.txt', content: 'from-a-file' }], env: { GREETING: 'hi' } },
    DEFAULT_POLICY,
  );
  // The pod's own command is `python3 /sandbox/main.py`; here the task directory is a temporary one.
  return {
    ...launcherTask('exec-1', 1, request, DEFAULT_POLICY, 'handed'),
    command: ['python3', path.join(dir, 'main.py')],
    ...extra,
  };
}

function launch(stdin: Buffer) {
  const r = spawnSync('python3', [LAUNCHER, '--warm', '--max-task-bytes', String(MAX_TASK_BYTES), '--task-dir', dir], {
    input: stdin,
    env: { ...process.env, DS_TERMINATION_LOG: path.join(dir, 'termination-log') },
    encoding: 'latin1',
    timeout: 20_000,
  });
  return { log: r.stdout, code: r.status, parsed: parseLauncherLog(r.stdout, caps) };
}

test('one whole task: accepted, its files and env in place, run once', () => {
  const code = `import os\nprint(open(os.path.join(os.path.dirname(__file__), "files", "data.txt")).read(), os.environ["GREETING"])`;
  const r = launch(frameTask(task(code)));
  expect(r.code).toBe(0);
  expect(r.log.split('\n').filter((l) => l.startsWith('a '))).toHaveLength(1);
  expect(
    JSON.parse(
      r.log
        .split('\n')
        .find((l) => l.startsWith('a '))!
        .slice(2),
    ),
  ).toMatchObject({ executionId: 'exec-1', attempt: 1 });
  expect(r.parsed.stdout.text).toBe('from-a-file hi\n');
  expect(r.parsed.trailer).toMatchObject({ exitCode: 0, error: null });
  // The pod's termination message says which task the sandbox took.
  expect(readFileSync(path.join(dir, 'termination-log'), 'utf8')).toMatch(
    /^accepted \{"executionId":"exec-1","attempt":1,/,
  );
});

test('a second task behind the first is never read: one program runs, once', () => {
  const first = frameTask(task('print("first")'));
  const second = frameTask(task('print("second")', { executionId: 'exec-2' }));
  const r = launch(Buffer.concat([first, second]));
  expect(r.parsed.stdout.text).toBe('first\n');
  expect(r.log.match(/^a /gm)).toHaveLength(1);
  expect(r.log.match(/^x /gm)).toHaveLength(1);
});

test.each([
  ['cut short', (b: Buffer) => b.subarray(0, b.length - 10), /ended 10 bytes early/],
  [
    'one byte changed',
    (b: Buffer) =>
      Buffer.concat([
        b.subarray(0, b.length - 1),
        Buffer.from('}' === String.fromCharCode(b[b.length - 1]) ? ']' : '}'),
      ]),
    /checksum/,
  ],
  ['no header', () => Buffer.from('print("hello")\n'), /not a task header/],
  ['nothing at all', () => Buffer.alloc(0), /stdin closed before a task arrived/],
  ['a length above the limit', () => Buffer.from(`durable-sandbox-task 1 ${MAX_TASK_BYTES + 1} abc\n`), /more than/],
])('a task %s runs nothing: the trailer says why and the launcher exits 125', (_name, mangle, why) => {
  const marker = path.join(dir, 'ran');
  const r = launch(mangle(frameTask(task(`open(${JSON.stringify(marker)}, "w").write("x")\nprint("ran")`))));
  expect(r.code).toBe(125);
  expect(r.log).not.toMatch(/^a /m);
  expect(r.parsed.stdout.text).toBe('');
  expect(r.parsed.trailer?.error).toMatch(why);
  expect(existsSync(marker)).toBe(false);
  expect(readFileSync(path.join(dir, 'termination-log'), 'utf8')).toMatch(/^delivery failed: /);
});

test('input files are written read-only where the program finds them', () => {
  const r = launch(frameTask(task('print("ok")')));
  expect(r.code).toBe(0);
  expect(readFileSync(path.join(dir, 'files', 'data.txt'), 'utf8')).toBe('from-a-file');
  expect(statSync(path.join(dir, 'files', 'data.txt')).mode & 0o777).toBe(0o444);
  expect(statSync(path.join(dir, 'main.py')).mode & 0o777).toBe(0o444);
});

/** The launcher in warm mode with its stdin kept open (as an unclaimed pool pod's is) until `write` is called. */
function launchIdle(maxIdleSeconds: number) {
  const child = spawn(
    'python3',
    [
      LAUNCHER,
      '--warm',
      '--max-task-bytes',
      String(MAX_TASK_BYTES),
      '--task-dir',
      dir,
      '--max-idle-seconds',
      String(maxIdleSeconds),
    ],
    { env: { ...process.env, DS_TERMINATION_LOG: path.join(dir, 'termination-log') }, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let log = '';
  child.stdout.setEncoding('latin1').on('data', (d: string) => (log += d));
  const exited = new Promise<{ code: number | null; log: string; ms: number }>((resolve) => {
    const t0 = Date.now();
    child.on('exit', (code) => resolve({ code, log, ms: Date.now() - t0 }));
  });
  return { child, exited };
}

test('an unclaimed sandbox ends itself after --max-idle-seconds: exit 0, nothing run, the termination message says why', async () => {
  const { child, exited } = launchIdle(1);
  const r = await exited;
  child.stdin.destroy();
  expect(r.code).toBe(0);
  expect(r.ms).toBeGreaterThanOrEqual(900);
  expect(r.log).not.toMatch(/^[ax] /m);
  expect(readFileSync(path.join(dir, 'termination-log'), 'utf8')).toBe('idle: no task arrived within 1 s');
});

test('a task that arrives before the idle limit runs as usual', async () => {
  const { child, exited } = launchIdle(5);
  await new Promise((r) => setTimeout(r, 300));
  child.stdin.end(frameTask(task('print("in time")')));
  const r = await exited;
  expect(r.code).toBe(0);
  expect(parseLauncherLog(r.log, caps).stdout.text).toBe('in time\n');
});

test("the compact launcher a pool pod carries in its command runs a task as the launcher's file does", () => {
  const source = readFileSync(LAUNCHER, 'utf8');
  const program = compactLauncher(source);
  expect(program.length).toBeLessThan(source.length / 2);
  // The pod's command: waitingLauncher('warm', program, ...), i.e. `python3 -c <program> --warm ...`.
  const [interpreter, flag, ...args] = waitingLauncher('warm', program, 30).map((a) => (a === SANDBOX_DIR ? dir : a));
  expect(flag).toBe('-c');
  const r = spawnSync(interpreter, [flag, ...args], {
    input: frameTask(task('import sys\nprint("hello from", sys.argv[0])')),
    env: { ...process.env, DS_TERMINATION_LOG: path.join(dir, 'termination-log') },
    encoding: 'latin1',
    timeout: 20_000,
  });
  expect(r.status).toBe(0);
  expect(r.stdout.split('\n').filter((l) => l.startsWith('a '))).toHaveLength(1);
  expect(parseLauncherLog(r.stdout, caps).stdout.text).toMatch(/^hello from /);
});

/**
 * The real launcher in session mode, on this machine: one interpreter for many runs, each sent framed on stdin and
 * answered in the log. State persists; a trailing expression shows its value; a failing run leaves the interpreter
 * as it was; a run past its limit is interrupted, and an interpreter that will not be interrupted is restarted for
 * the next run (which says so); each run sends back the files it wrote; the log of one run is read apart from the
 * others.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { frameTask } from '../../activities/task-frame';
import type { LauncherTask } from '../../core/launcher-protocol';
import { LauncherLogParser } from '../../core/output';
import { MAX_TASK_BYTES } from '../../core/pool';
import { LAUNCHER } from '../helpers/launcher';

const caps = {
  stdoutCapBytes: 4096,
  stderrCapBytes: 4096,
  outputFilesMaxCount: 4,
  outputFileCapBytes: 1024,
  outputFilesCapBytes: 4096,
};
let dir: string;
let launcher: ChildProcessWithoutNullStreams;
let log = '';
let exited: Promise<number | null>;

/** The sandbox's HOME (its workspace), beside the task directory as in a pod. */
function home(): string {
  const h = path.join(dir, 'home');
  mkdirSync(h, { recursive: true });
  return h;
}

function start(mode: '--session' | '--warm') {
  log = '';
  launcher = spawn('python3', [LAUNCHER, mode, '--max-task-bytes', String(MAX_TASK_BYTES), '--task-dir', dir], {
    // The sandbox's working directory is its HOME: runs that write relative paths write there.
    cwd: home(),
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home(),
      TMPDIR: home(),
      DS_TERMINATION_LOG: path.join(dir, 'tl'),
    },
  });
  launcher.stdout.setEncoding('latin1');
  launcher.stdout.on('data', (d: string) => (log += d));
  exited = new Promise((resolve) => launcher.on('exit', (code) => resolve(code)));
}

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ds-session-'));
  start('--session');
});
afterEach(async () => {
  launcher.kill('SIGKILL');
  await exited;
  rmSync(dir, { recursive: true, force: true });
});

let seq = 0;

/** A session run's task (the launcher's defaults for everything the test does not say). */
function taskOf(code: string, extra: Partial<LauncherTask> = {}): LauncherTask {
  return {
    executionId: 'session-1',
    attempt: 1,
    file: 'main.py',
    command: ['python3'],
    code,
    files: [],
    env: {},
    timeoutSeconds: 10,
    stdoutCap: caps.stdoutCapBytes,
    stderrCap: caps.stderrCapBytes,
    outDir: path.join(dir, 'out'),
    filesMaxCount: caps.outputFilesMaxCount,
    fileCap: caps.outputFileCapBytes,
    filesCap: caps.outputFilesCapBytes,
    ...extra,
  };
}
/** Sends one run and waits for its trailer; returns the run's own part of the log, parsed. */
async function run(code: string, extra: Partial<LauncherTask> = {}) {
  const n = ++seq;
  launcher.stdin.write(frameTask(taskOf(code, { seq: n, ...extra })));
  for (let i = 0; i < 400; i++) {
    const parser = new LauncherLogParser(caps, { run: n });
    parser.push(log);
    if (parser.trailer) return { ...parser.result(true), session: parser.session, accepted: parser.accepted };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`run ${n} never ended; log:\n${log}`);
}

test('variables, imports, the working directory and files persist; a trailing expression shows its value', async () => {
  const first = await run('x = 41\nimport math\nx + 1');
  expect(first.stdout.text).toBe('42\n');
  expect(first.trailer).toMatchObject({ exitCode: 0, timedOut: false, error: null });
  expect(first.session).toMatchObject({ interpreter: 'started', next: 'keep' });
  expect(first.accepted).toMatchObject({ executionId: 'session-1', seq });
  const second = await run(
    `print(x, round(math.pi, 2))\nimport os\nos.chdir(${JSON.stringify(dir)})\nopen("kept.txt", "w").write("k")`,
  );
  expect(second.stdout.text).toBe('41 3.14\n1\n');
  expect(second.session).toMatchObject({ interpreter: 'kept' });
  const third = await run('os.getcwd(), open("kept.txt").read(), None');
  expect(third.stdout.text).toBe(`(${JSON.stringify(dir).replace(/"/g, "'")}, 'k', None)\n`);
  // A statement shows nothing; a None value shows nothing.
  expect((await run('y = 1')).stdout.text).toBe('');
  expect((await run('None')).stdout.text).toBe('');
});

test('a failing run prints its traceback, exits 1, and leaves the interpreter as it was', async () => {
  await run('count = 1');
  const failed = await run('count += 1\n1/0');
  expect(failed.trailer).toMatchObject({ exitCode: 1, timedOut: false });
  expect(failed.stderr.text).toMatch(/File "<run \d+>", line 2, in <module>\n\s+1\/0\n[\s\S]*ZeroDivisionError/);
  expect(failed.stderr.text).not.toMatch(/_cell|_serve/);
  const exited3 = await run('import sys\nsys.exit(3)');
  expect(exited3.trailer).toMatchObject({ exitCode: 3 });
  expect((await run('count')).stdout.text).toBe('2\n');
  expect((await run('def f(:\n  pass')).stderr.text).toMatch(/SyntaxError/);
});

test('a run past its limit is interrupted, and the session goes on with its state', async () => {
  await run('kept = "yes"');
  const slow = await run('import time\nwhile True:\n    time.sleep(0.05)', { timeoutSeconds: 1 });
  expect(slow.trailer).toMatchObject({ exitCode: 124, timedOut: true, signal: null });
  expect(slow.stderr.text).toMatch(/KeyboardInterrupt/);
  expect(slow.session).toMatchObject({ interpreter: 'kept', next: 'keep' });
  const after = await run('kept');
  expect(after.stdout.text).toBe("'yes'\n");
  expect(after.session).toMatchObject({ interpreter: 'kept' });
});

test('an interpreter that ignores the interrupt is restarted for the next run, files kept, and that run says why', async () => {
  await run(`lost = 1\nopen(${JSON.stringify(path.join(dir, 'f.txt'))}, "w").write("still here")`);
  const stuck = await run('import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass', {
    timeoutSeconds: 1,
  });
  expect(stuck.trailer).toMatchObject({ exitCode: 124, timedOut: true, signal: 9 });
  expect(stuck.session).toMatchObject({ next: 'restart' });
  const next = await run(`print("lost" in dir(), open(${JSON.stringify(path.join(dir, 'f.txt'))}).read())`);
  expect(next.stdout.text).toBe('False still here\n');
  expect(next.session).toMatchObject({ interpreter: 'restarted', why: expect.stringMatching(/did not come back/) });
});

test('an interpreter that exits is restarted for the next run', async () => {
  const gone = await run('import os\nos._exit(7)');
  expect(gone.trailer).toMatchObject({ signal: 9, error: 'the interpreter exited during the run' });
  const next = await run('1 + 1');
  expect(next.stdout.text).toBe('2\n');
  expect(next.session).toMatchObject({ interpreter: 'restarted', why: expect.stringMatching(/exited/) });
});

test('each run sends back the files it wrote under the out directory, not the earlier ones', async () => {
  const out = JSON.stringify(path.join(dir, 'out'));
  const first = await run(
    `import os\nos.makedirs(${out}, exist_ok=True)\nopen(os.path.join(${out}, "a.txt"), "w").write("a")`,
  );
  expect(first.files.map((f) => f.name)).toEqual(['a.txt']);
  const second = await run(`open(os.path.join(${out}, "b.txt"), "w").write("b")`);
  expect(second.files.map((f) => [f.name, f.content])).toEqual([['b.txt', 'b']]);
});

test('stdin closing ends the session cleanly', async () => {
  await run('1');
  launcher.stdin.end();
  expect(await exited).toBe(0);
});

test('a damaged task ends the session and says why', async () => {
  await run('1');
  launcher.stdin.write('durable-sandbox-task 1 5 0000\nhello');
  expect(await exited).toBe(125);
  expect(log).toMatch(/checksum does not match/);
});

test('a warm launcher whose first task is a session run becomes that session: state persists, its idle limit applies', async () => {
  launcher.kill('SIGKILL');
  await exited;
  start('--warm');
  const first = await run('import os\nx = 41\nos.makedirs("w", exist_ok=True); os.chdir("w")', { idleSeconds: 1 });
  expect(first).toMatchObject({ trailer: { exitCode: 0 }, session: { interpreter: 'started' } });
  const second = await run('x + 1, os.path.basename(os.getcwd())', { idleSeconds: 1 });
  expect(second.stdout.text).toBe("(42, 'w')\n");
  expect(second.session).toMatchObject({ interpreter: 'kept' });
  // No third run: the session's own idle limit (1 s, from the task) ends it, not the warm pool's (none here).
  const t0 = Date.now();
  expect(await exited).toBe(0);
  expect(Date.now() - t0).toBeLessThan(5000);
});

test('a warm launcher given a one-shot task still reads no second task', async () => {
  launcher.kill('SIGKILL');
  await exited;
  start('--warm');
  // No seq: a one-shot task.
  const oneShot = taskOf('import sys\nprint(sys.stdin.read() == "")', {
    executionId: 'e-1',
    command: ['python3', path.join(dir, 'main.py')],
  });
  launcher.stdin.write(frameTask(oneShot));
  // Another task (a session run) after it is never read: the program runs once, and its stdin is empty.
  launcher.stdin.write(frameTask({ ...oneShot, seq: 1, code: 'print("second")' }));
  expect(await exited).toBe(0);
  const parser = new LauncherLogParser(caps);
  parser.push(log);
  expect(parser.result(true).stdout.text).toBe('True\n');
  expect(log.match(/^x /gm)).toHaveLength(1);
});

describe('a bash session', () => {
  const bash = (code: string, extra: Partial<LauncherTask> = {}) =>
    run(code, { command: ['bash'], file: 'main.sh', kernel: 'bash', ...extra });

  test('one shell for every run: the working directory, variables, exports and functions persist', async () => {
    const first = await bash('mkdir -p proj && cd proj\nCOUNT=41\nexport GREETING=hi\ntwice() { echo "$1$1"; }');
    expect(first).toMatchObject({ trailer: { exitCode: 0 }, session: { interpreter: 'started' } });
    const second = await bash('echo "$((COUNT + 1)) $(basename "$PWD") $(bash -c \'echo $GREETING\')"\ntwice ab');
    expect(second.stdout.text).toBe('42 proj hi\nabab\n');
    expect(second.session).toMatchObject({ interpreter: 'kept' });
  });

  test("a failing command is the run's exit status; the shell goes on", async () => {
    const failed = await bash('ls /no/such/dir');
    expect(failed.trailer?.exitCode).toBe(2);
    expect(failed.stderr.text).toMatch(/No such file/);
    expect((await bash('echo still here')).stdout.text).toBe('still here\n');
  });

  test('a run past its limit is interrupted (its command, not the shell); the state is kept', async () => {
    await bash('KEPT=yes');
    const slow = await bash('sleep 30', { timeoutSeconds: 1 });
    expect(slow.trailer).toMatchObject({ timedOut: true });
    const next = await bash('echo $KEPT');
    expect(next.stdout.text).toBe('yes\n');
    expect(next.session).toMatchObject({ interpreter: 'kept' });
  });

  test("a run's exit ends the shell, which is restarted for the next run, files kept", async () => {
    await bash('echo kept > f.txt\nexit 3');
    const next = await bash('cat f.txt; echo "${GONE:-unset}"');
    expect(next.stdout.text).toBe('kept\nunset\n');
    expect(next.session).toMatchObject({ interpreter: 'restarted' });
  });
});

test('a task naming no kernel the launcher has ends the session and says why', async () => {
  await run('1');
  const task = frameTask(taskOf('1', { seq: 99, kernel: 'cobol' as 'bash' }));
  launcher.stdin.write(task);
  expect(await exited).toBe(125);
  expect(log).toMatch(/no session kernel 'cobol'/);
});

test("each run says what the workspace holds: unchanged from the sandbox's start until a run writes a file", async () => {
  const quiet = await run('x = 1');
  expect(quiet.session?.workspace).toMatchObject({ sig: expect.any(String), base: quiet.session?.workspace?.base });
  expect(quiet.session?.workspace?.sig).toBe(quiet.session?.workspace?.base);
  const wrote = await run('open("notes.txt", "w").write("kept")');
  expect(wrote.session?.workspace?.sig).not.toBe(wrote.session?.workspace?.base);
  expect(wrote.session?.workspace).toMatchObject({ bytes: expect.any(Number), entries: expect.any(Number) });
  const again = await run('x += 1');
  expect(again.session?.workspace?.sig).toBe(wrote.session?.workspace?.sig);
});

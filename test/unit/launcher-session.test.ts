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
import { checkpointOf, LauncherLogParser } from '../../core/output';
import { MAX_TASK_BYTES } from '../../core/pool';
import { PROJECT_ROOT } from '../../cli/local-stack';
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
      // The image's `typescript` module: this checkout's here.
      NODE_PATH: path.join(PROJECT_ROOT, 'node_modules'),
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

test('a run handed again (its number already accepted) is not run again; the next run is', async () => {
  const first = await run('n = globals().get("n", 0) + 1\nprint(n)');
  expect(first.stdout.text).toBe('1\n');
  // A worker that died after handing run `seq` over hands it again: the launcher already took it.
  launcher.stdin.write(frameTask(taskOf('n = globals().get("n", 0) + 1\nprint(n)', { seq })));
  launcher.stdin.write(frameTask(taskOf('n = globals().get("n", 0) + 1\nprint(n)', { seq: seq - 1 })));
  const next = await run('print(n)');
  expect(next.stdout.text).toBe('1\n');
  expect(log.match(/^a /gm)).toHaveLength(2);
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

/** The checkpoint the launcher wrote after run `n` (its `k` line, after the run's trailer). */
async function checkpointAfter(n: number) {
  for (let i = 0; i < 200; i++) {
    const k = checkpointOf(log, n);
    if (k) return k;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no checkpoint after run ${n}; log:\n${log}`);
}

/** A new launcher in the same sandbox (its workspace kept, as the workspace store puts it back on a new pod). */
async function newPod() {
  launcher.kill('SIGKILL');
  await exited;
  start('--session');
}

describe('checkpoints: the state a run leaves, kept in the workspace and restored from it', () => {
  const withCheckpoint = { checkpoint: { maxBytes: 1 << 20 } };

  test("Python: a random draw, a timestamp and a failed run's assignments come back the same; unchanged state is not written again", async () => {
    await run(
      'import random, time, math\nx = random.random()\nt = time.time()\ndef twice(v):\n    return 2 * v',
      withCheckpoint,
    );
    const first = await checkpointAfter(seq);
    expect(first).toMatchObject({ changed: true, names: expect.any(Number) });
    const failed = await run('partial = "assigned"\nraise ValueError("after the assignment")', withCheckpoint);
    expect(failed.trailer?.exitCode).toBe(1);
    expect(await checkpointAfter(seq)).toMatchObject({ changed: true });
    await run('print(1)', withCheckpoint);
    const same = await checkpointAfter(seq);
    expect(same).toMatchObject({ changed: false, sha: (await checkpointAfter(seq - 1)).sha });
    const before = (await run('print(repr((x, t, partial, math.pi)))')).stdout.text;

    await newPod();
    const restored = await run('', { op: 'restore' });
    expect([restored.trailer?.exitCode, restored.session?.state]).toEqual([
      0,
      expect.objectContaining({ names: same.names }),
    ]);
    const after = await run('print(repr((x, t, partial, math.pi)))');
    expect(after.stdout.text).toBe(before);
    // A function defined in the session: kept by dill (the images' serializer); plain pickle names it as not kept.
    const fn = await run('print(twice(21))');
    if (restored.session?.state?.with === 'dill') expect(fn.stdout.text).toBe('42\n');
    else expect(first.skipped).toEqual([expect.stringMatching(/^twice \(function/)]);
  });

  test('what cannot be serialized is named and left out; the rest is kept', async () => {
    await run(
      'import socket, threading\ns = socket.socket()\ng = (i for i in range(3))\nkept = [1, 2]',
      withCheckpoint,
    );
    const k = await checkpointAfter(seq);
    expect(k.skipped).toEqual(
      expect.arrayContaining([expect.stringMatching(/^g \(generator/), expect.stringMatching(/^s \(socket/)]),
    );
    await newPod();
    await run('', { op: 'restore' });
    expect((await run('print(kept, "s" in globals(), "g" in globals())')).stdout.text).toBe('[1, 2] False False\n');
  });

  test('an interpreter restarted in the pod (its stdout closed) gets the last checkpoint back, and says so', async () => {
    await run('z = 5', withCheckpoint);
    await checkpointAfter(seq);
    await run('import os\nos.close(1)\nos.close(2)');
    const next = await run('print(z)');
    expect(next.stdout.text).toBe('5\n');
    expect(next.session).toMatchObject({ interpreter: 'restarted', state: { names: 1 } });
  });

  test('a replay task runs earlier runs again, in order, in one task', async () => {
    const r = await run('', { op: 'replay', codes: ['a = 1', 'a += 1', 'raise ValueError()', 'b = a * 21'] });
    expect(r.session?.replayed).toEqual({ runs: 4, of: 4, failed: 1 });
    expect((await run('b')).stdout.text).toBe('42\n');
  });

  test('bash: variables (exported, arrays), functions and the working directory come back', async () => {
    const bash = (code: string, extra: Partial<LauncherTask> = {}) =>
      run(code, { command: ['bash'], file: 'main.sh', kernel: 'bash', ...extra });
    await bash(
      'mkdir -p proj && cd proj\nCOUNT=41\nexport GREETING=hi\nLIST=(a "b c")\nMULTI=$\'x\\ny\'\ntwice() { echo "$1$1"; }',
      withCheckpoint,
    );
    expect(await checkpointAfter(seq)).toMatchObject({ changed: true });
    await newPod();
    const restored = await bash('', { op: 'restore' });
    expect(restored.trailer?.exitCode).toBe(0);
    const after = await bash(
      'echo "$((COUNT + 1)) $(basename "$PWD") $(bash -c \'echo $GREETING\') ${LIST[1]} ${#MULTI}"\ntwice ab',
    );
    expect(after.stdout.text).toBe('42 proj hi b c 3\nabab\n');
  });

  test('a restore with no checkpoint in the workspace says so, and fails', async () => {
    const r = await run('', { op: 'restore' });
    expect(r.trailer?.exitCode).toBe(1);
    expect(r.session?.state).toEqual({ error: 'the workspace holds no saved state' });
  });
});

test('output a run leaves behind (a thread printing forever) is read between runs, counted and said; the session goes on', async () => {
  await run(
    'import threading, time, sys\ndef spam():\n    while True:\n        sys.stdout.write("x" * 1000 + "\\n")\n        time.sleep(0.001)\nthreading.Thread(target=spam, daemon=True).start()',
  );
  await new Promise((r) => setTimeout(r, 1500));
  // The thread goes on writing to stdout: the run answers on stderr.
  const next = await run('import sys\nprint("answer", file=sys.stderr)');
  expect(next.trailer?.exitCode).toBe(0);
  expect(next.stderr.text).toBe('answer\n');
  expect(next.session).toMatchObject({ interpreter: 'kept', leftover: { bytes: expect.any(Number) } });
  expect(next.session!.leftover!.bytes).toBeGreaterThan(100_000);
  expect(next.session!.leftover!.text).toMatch(/^x+/);
});

describe('a JavaScript session', () => {
  const js = (code: string, extra: Partial<LauncherTask> = {}) =>
    run(code, { command: ['node'], file: 'main.js', kernel: 'javascript', ...extra });

  test('variables, functions, classes and required modules persist; top-level await; the last value is shown', async () => {
    expect((await js('let x = 6')).stdout.text).toBe('');
    expect((await js('x * 7')).stdout.text).toBe('42\n');
    await js(
      "const fs = require('fs')\nfunction twice(s) { return s + s }\nclass Box { constructor(v) { this.v = v } }",
    );
    expect((await js("fs.existsSync('/') + ' ' + twice('ab') + ' ' + new Box(3).v")).stdout.text).toBe(
      "'true abab 3'\n",
    );
    const awaited = await js('const later = await new Promise((r) => setTimeout(() => r(5), 20))\nlater + x');
    expect(awaited.stdout.text).toBe('11\n');
    expect((await js('async function f() { return 2 }\nconst y = await f()\nclass C {}\ny')).stdout.text).toBe('2\n');
    expect((await js('[later, y, f.name, typeof C]')).stdout.text).toBe("[ 5, 2, 'f', 'function' ]\n");
    expect((await js('console.log({ a: [1, 2] })\nundefined')).stdout.text).toBe('{ a: [ 1, 2 ] }\n');
  });

  test("a failing run prints its error with the run's line, exits 1, and the kernel goes on", async () => {
    await js('let count = 1');
    const failed = await js('count += 1\nnull.boom');
    expect(failed.trailer).toMatchObject({ exitCode: 1, timedOut: false });
    expect(failed.stderr.text).toMatch(/TypeError: Cannot read properties of null[\s\S]*<run \d+>:2/);
    expect(failed.stderr.text).not.toMatch(/node:internal|ds-kernel/);
    expect((await js('count')).stdout.text).toBe('2\n');
    expect((await js('let = =')).stderr.text).toMatch(/SyntaxError/);
    // An error a timer throws later is reported, not the kernel's end.
    await js("setTimeout(() => { throw new Error('late') }, 10); 'set'");
    await new Promise((r) => setTimeout(r, 100));
    const after = await js('count');
    expect(after.session).toMatchObject({ interpreter: 'kept' });
  });

  test('a run past its limit is interrupted, a busy loop or a wait, and the session keeps its state', async () => {
    await js('const kept = "yes"');
    const busy = await js('while (true) {}', { timeoutSeconds: 1 });
    expect(busy.trailer).toMatchObject({ timedOut: true });
    const waiting = await js('await new Promise(() => {})', { timeoutSeconds: 1 });
    expect(waiting.trailer).toMatchObject({ timedOut: true });
    const next = await js('kept');
    expect(next.stdout.text).toBe("'yes'\n");
    expect(next.session).toMatchObject({ interpreter: 'kept' });
  });

  test('process.exit ends the run with its status, as sys.exit does; a kernel that exits or goes deaf is restarted', async () => {
    await js('const kept = 1');
    expect((await js('process.exit(4)')).trailer?.exitCode).toBe(4);
    expect((await js('kept')).session).toMatchObject({ interpreter: 'kept' });
    await js("setTimeout(() => process.exit(9), 10); 'later'");
    await new Promise((r) => setTimeout(r, 100));
    const next = await js('typeof kept');
    expect(next).toMatchObject({ stdout: { text: "'undefined'\n" }, session: { interpreter: 'restarted' } });
    await js("require('fs').closeSync(1)");
    expect((await js('1')).session).toMatchObject({ interpreter: 'restarted' });
  });
});

describe('a TypeScript session', () => {
  const tsRun = (code: string) => run(code, { command: ['node'], file: 'main.ts', kernel: 'typescript' });

  test('typed runs run; a type error fails the run with its line and leaves nothing declared', async () => {
    expect((await tsRun('const n: number = 42; n')).stdout.text).toBe('42\n');
    const bad = await tsRun('const s: string = n');
    expect(bad.trailer?.exitCode).toBe(1);
    expect(bad.stderr.text).toMatch(/<run \d+>\(1,7\): error TS2322: Type 'number' is not assignable to type 'string'/);
    // The failed run declared nothing: `s` may be declared again, and earlier names keep their types.
    expect((await tsRun('const s: string = String(n); s.length')).stdout.text).toBe('2\n');
    expect(
      (await tsRun('interface P { a: number }\nconst p: P = { a: await Promise.resolve(2) }\np.a + n')).stdout.text,
    ).toBe('44\n');
    expect((await tsRun("const fs = require('fs') as typeof import('fs'); fs.existsSync('/')")).stdout.text).toBe(
      'true\n',
    );
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

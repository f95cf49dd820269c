/**
 * Output buffering, with the real launcher and this machine's python3: a program that prints in a loop pays neither a
 * system call per line (its Python buffers and flushes every 50 ms) nor a log line per read (the launcher batches),
 * and output still arrives while the program runs. Whatever ends the program, what it printed comes out whole.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseLauncherLog } from '../../core/output';
import { programEnv } from '../../core/manifests';
import { coldLauncherArgs } from '../helpers/launcher';

const caps = { stdoutCapBytes: 1 << 20, stderrCapBytes: 1 << 20 };
let dir: string;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ds-buffering-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The environment a sandboxed Python program gets (not this process's, which may set PYTHONUNBUFFERED). */
function sandboxEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', ...programEnv('python'), HOME: dir, TMPDIR: dir, ...extra };
}

function launcherArgs(program: string, command: string[] = ['python3'], timeoutSeconds = 30): string[] {
  const file = path.join(dir, 'main.py');
  writeFileSync(file, program);
  return coldLauncherArgs(dir, {
    command: [...command, file],
    timeoutSeconds,
    stdoutCap: caps.stdoutCapBytes,
    stderrCap: caps.stderrCapBytes,
  });
}

function launch(program: string, options: { env?: Record<string, string>; command?: string[]; timeout?: number } = {}) {
  const r = spawnSync('python3', launcherArgs(program, options.command, options.timeout), {
    env: sandboxEnv(options.env),
    encoding: 'latin1',
    timeout: 30_000,
  });
  const frames = (tag: string) => r.stdout.split('\n').filter((l) => l.startsWith(`${tag} `)).length;
  return { log: r.stdout, frames, parsed: parseLauncherLog(r.stdout, caps) };
}

test('200,000 lines written one by one reach the log byte for byte, in few frames', () => {
  const r = launch('import sys\nfor _ in range(200000):\n    sys.stdout.write("x\\n")\n');
  expect(r.parsed.trailer).toMatchObject({ exitCode: 0, stdoutBytes: 400_000, error: null });
  expect(r.parsed.stdout.text).toBe('x\n'.repeat(200_000));
  // Whole 8 KiB frames (49 for 400,000 bytes) and a few partial ones, instead of one per write.
  expect(r.frames('o')).toBeLessThan(100);
});

test('a bash loop of echos is framed in few lines too', () => {
  const r = launch('for i in $(seq 20000); do echo x; done\n', { command: ['bash'] });
  expect(r.parsed.trailer).toMatchObject({ exitCode: 0, stdoutBytes: 40_000 });
  expect(r.parsed.stdout.text).toBe('x\n'.repeat(20_000));
  expect(r.frames('o')).toBeLessThan(50);
});

test('a line printed before a sleep reaches the log within 250 ms, while the program still sleeps', async () => {
  const child = spawn('python3', launcherArgs('import time\nprint(time.time())\ntime.sleep(1.5)\nprint("done")\n'), {
    env: sandboxEnv(),
  });
  let log = '';
  const first = await new Promise<{ at: number; line: string; trailerSeen: boolean }>((resolve, reject) => {
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (piece: string) => {
      const at = Date.now();
      log += piece;
      const line = log
        .split('\n')
        .slice(0, -1)
        .find((l) => l.startsWith('o '));
      if (line) resolve({ at, line, trailerSeen: /^x /m.test(log) });
    });
    child.on('exit', () => reject(new Error(`the launcher ended before any output: ${log}`)));
  });
  const printedAt = Number(Buffer.from(first.line.slice(2), 'base64').toString()) * 1000;
  expect(first.trailerSeen).toBe(false);
  expect(first.at - printedAt).toBeLessThan(250);
  await new Promise((resolve) => child.on('close', resolve));
  const parsed = parseLauncherLog(log, caps);
  expect(parsed.stdout.text).toMatch(/^\d+\.\d+\ndone\n$/);
  expect(parsed.trailer).toMatchObject({ exitCode: 0 });
});

test('an uncaught exception: stdout and the whole traceback, byte for byte', () => {
  const program = [
    'import sys',
    'print("out é")',
    'sys.stdout.write("no newline")',
    'sys.stderr.write("err without newline, ")',
    'def fail():',
    '    raise ValueError("boom")',
    'fail()',
    '',
  ].join('\n');
  const r = launch(program);
  expect(r.parsed.trailer).toMatchObject({ exitCode: 1 });
  expect(r.parsed.stdout.text).toBe('out é\nno newline');
  expect(r.parsed.stderr.text).toBe(
    'err without newline, Traceback (most recent call last):\n' +
      `  File "${path.join(dir, 'main.py')}", line 7, in <module>\n` +
      '    fail()\n' +
      `  File "${path.join(dir, 'main.py')}", line 6, in fail\n` +
      '    raise ValueError("boom")\n' +
      'ValueError: boom\n',
  );
});

test('sys.exit(3) flushes what is buffered', () => {
  const r = launch('import sys\nsys.stdout.write("partial line")\nsys.stderr.write("and stderr")\nsys.exit(3)\n');
  expect(r.parsed.trailer).toMatchObject({ exitCode: 3, stdoutBytes: 12, stderrBytes: 10 });
  expect(r.parsed.stdout.text).toBe('partial line');
  expect(r.parsed.stderr.text).toBe('and stderr');
});

test('os._exit skips the last flush, but output older than the flush period is out already', () => {
  // What a program writes less than 50 ms before os._exit may be lost (as in any buffered Python).
  const r = launch('import os, time\nprint("kept")\ntime.sleep(0.3)\nos._exit(5)\n');
  expect(r.parsed.trailer).toMatchObject({ exitCode: 5 });
  expect(r.parsed.stdout.text).toBe('kept\n');
});

test('the time limit: what was printed before it is in the log, ahead of the trailer', () => {
  const r = launch('print("spinning")\nwhile True:\n    pass\n', { timeout: 2 });
  expect(r.parsed.trailer).toMatchObject({ timedOut: true });
  expect(r.parsed.stdout.text).toBe('spinning\n');
});

test('a stopped sandbox (SIGTERM to the launcher): what was printed is in the log, ahead of the trailer', async () => {
  const child = spawn('python3', launcherArgs('import time\nprint("waiting")\ntime.sleep(60)\n'), {
    env: sandboxEnv(),
  });
  let log = '';
  child.stdout.setEncoding('latin1');
  child.stdout.on('data', (piece: string) => {
    log += piece;
    if (/^o /m.test(log)) child.kill('SIGTERM');
  });
  await new Promise((resolve) => child.on('close', resolve));
  const parsed = parseLauncherLog(log, caps);
  expect(parsed.trailer).toMatchObject({ terminated: true });
  expect(parsed.stdout.text).toBe('waiting\n');
});

test('the flushing thread: there by default, absent under PYTHONUNBUFFERED=1 and -u (which write through)', () => {
  const probe = 'import os, sys\nprint(len(os.listdir("/proc/self/task")), sys.stdout.write_through)\n';
  expect(launch(probe).parsed.stdout.text).toBe('2 False\n');
  expect(launch(probe, { env: { PYTHONUNBUFFERED: '1' } }).parsed.stdout.text).toBe('1 True\n');
  expect(launch(probe, { command: ['python3', '-u'] }).parsed.stdout.text).toBe('1 True\n');
});

test("the program's PYTHONPATH still works, its own sitecustomize included; nothing is left behind", () => {
  const lib = path.join(dir, 'lib');
  mkdirSync(lib);
  writeFileSync(path.join(lib, 'helper.py'), 'VALUE = "from helper"\n');
  writeFileSync(path.join(lib, 'sitecustomize.py'), 'import builtins\nbuiltins.CUSTOMIZED = True\n');
  const r = launch('import helper\nprint(helper.VALUE, CUSTOMIZED)\n', { env: { PYTHONPATH: lib } });
  expect(r.parsed.stderr.text).toBe('');
  expect(r.parsed.stdout.text).toBe('from helper True\n');
  expect(readdirSync(dir).filter((f) => f.startsWith('.durable-sandbox'))).toEqual([]);
});

test('a fork prints nothing twice, and the child flushes on its own', () => {
  const program = [
    'import os, sys, time',
    'sys.stdout.write("before fork\\n")',
    'pid = os.fork()',
    'if pid == 0:',
    '    print("child")',
    '    time.sleep(0.3)',
    '    os._exit(0)',
    'os.waitpid(pid, 0)',
    'print("parent")',
    '',
  ].join('\n');
  const r = launch(program);
  expect(r.parsed.stderr.text).toBe('');
  expect(r.parsed.stdout.text).toBe('before fork\nchild\nparent\n');
});

test('the caps stay exact: bytes past them are counted, not framed', () => {
  const program = [
    'import sys',
    'for _ in range(200000):',
    '    sys.stdout.write("x\\n")',
    'for _ in range(10000):',
    '    sys.stderr.write("e\\n")',
  ].join('\n');
  const r = spawnSync(
    'python3',
    coldLauncherArgs(dir, { command: ['python3', '-c', program], timeoutSeconds: 30, stdoutCap: 1000, stderrCap: 10 }),
    { env: sandboxEnv(), encoding: 'latin1', timeout: 30_000 },
  );
  const framed = (tag: string) =>
    r.stdout
      .split('\n')
      .filter((l) => l.startsWith(`${tag} `))
      .reduce((n, l) => n + Buffer.from(l.slice(2), 'base64').length, 0);
  expect(framed('o')).toBe(1000);
  expect(framed('e')).toBe(10);
  const parsed = parseLauncherLog(r.stdout, { stdoutCapBytes: 1000, stderrCapBytes: 10 });
  expect(parsed.trailer).toMatchObject({ exitCode: 0, stdoutBytes: 400_000, stderrBytes: 20_000 });
  expect(parsed.stdout.text).toBe('x\n'.repeat(500));
  expect(parsed.stderr.text).toBe('e\n'.repeat(5));
});

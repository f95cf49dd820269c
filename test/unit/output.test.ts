import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LauncherLogParser, logReadLimit, parseLauncherLog, unseen } from '../../core/output';

import { coldLauncherArgs } from '../helpers/launcher';

let taskDir: string;
beforeEach(() => (taskDir = mkdtempSync(path.join(os.tmpdir(), 'ds-task-'))));
afterEach(() => rmSync(taskDir, { recursive: true, force: true }));
const caps = { stdoutCapBytes: 64, stderrCapBytes: 32 };

/** Runs the real launcher on this machine and returns its log and exit code. */
function launch(program: string, timeout = 5, c = caps): { log: string; code: number } {
  try {
    const log = execFileSync(
      'python3',
      coldLauncherArgs(taskDir, {
        command: ['python3', '-c', program],
        timeoutSeconds: timeout,
        stdoutCap: c.stdoutCapBytes,
        stderrCap: c.stderrCapBytes,
      }),
      { encoding: 'utf8' },
    );
    return { log, code: 0 };
  } catch (e) {
    const err = e as { stdout: string; status: number };
    return { log: err.stdout, code: err.status };
  }
}

describe('launcher + parseLauncherLog', () => {
  test('keeps stdout and stderr apart and reports the exit code', () => {
    const { log, code } = launch('import sys\nprint("out")\nprint("err", file=sys.stderr)\nsys.exit(7)');
    expect(code).toBe(7);
    const p = parseLauncherLog(log, caps);
    expect(p.launcherSeen).toBe(true);
    expect(p.stdout).toEqual({ text: 'out\n', totalBytes: 4, capturedBytes: 4, truncated: false });
    expect(p.stderr).toEqual({ text: 'err\n', totalBytes: 4, capturedBytes: 4, truncated: false });
    expect(p.trailer).toMatchObject({ exitCode: 7, timedOut: false, terminated: false });
  });

  test('caps each stream, counts the rest, and flags it', () => {
    const { log } = launch('import sys\nsys.stdout.write("a" * 100000)\nsys.stderr.write("b" * 100)');
    const p = parseLauncherLog(log, caps);
    expect(p.stdout).toEqual({ text: 'a'.repeat(64), totalBytes: 100000, capturedBytes: 64, truncated: true });
    expect(p.stderr).toMatchObject({ capturedBytes: 32, totalBytes: 100, truncated: true });
    expect(Buffer.byteLength(log)).toBeLessThan(logReadLimit(caps));
  });

  test('binary and invalid UTF-8 become text without breaking anything', () => {
    const { log } = launch('import sys\nsys.stdout.buffer.write(bytes(range(256))[:60])');
    const p = parseLauncherLog(log, caps);
    expect(p.stdout.capturedBytes).toBe(60);
    expect(p.stdout.text.startsWith('\u0000\u0001')).toBe(true);
    expect(() => JSON.stringify(p)).not.toThrow();
  });

  test('kills the program at its timeout and says so', () => {
    const started = Date.now();
    const { log, code } = launch('import time\nprint("x", flush=True)\ntime.sleep(30)', 1);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(code).toBe(124);
    expect(parseLauncherLog(log, caps).trailer).toMatchObject({ timedOut: true, exitCode: 124 });
  });

  test('a program that closes stdout and keeps running is waited for', () => {
    const { log, code } = launch(
      'import os, time\nprint("a", flush=True)\nos.close(1)\ntime.sleep(1)\nraise SystemExit(4)',
    );
    expect(code).toBe(4);
    expect(parseLauncherLog(log, caps).stdout.text).toBe('a\n');
  });

  test('forged or broken frames cannot exceed the caps', () => {
    const big = Buffer.alloc(1000, 120).toString('base64');
    const log = `durable-sandbox-launcher 1\no ${big}\no ${big}\ne ${big}\nnot a frame\nx {"broken json`;
    const p = parseLauncherLog(log, caps);
    expect(p.stdout.capturedBytes).toBe(64);
    expect(p.stderr.capturedBytes).toBe(32);
    expect(p.trailer).toBeNull();
    expect(p.stdout.truncated).toBe(true);
  });

  test('a log cut short at the read limit is flagged as truncated', () => {
    const { log } = launch('print("hi")');
    const p = parseLauncherLog(log, caps, false);
    expect(p.stdout.truncated).toBe(true);
  });
});

describe('streaming: the log fed in pieces', () => {
  test('pieces of any size give the same result as the whole log, and the text so far is always a prefix', () => {
    // Multi-byte characters split across frames and across pieces, invalid bytes, both streams.
    const program =
      'import sys\nfor i in range(40):\n    sys.stdout.buffer.write("é€😀".encode()[i % 5:] + b"\\xff")\n    sys.stderr.write("err%d " % i)\n    sys.stdout.flush()';
    const big = { stdoutCapBytes: 4096, stderrCapBytes: 4096 };
    const { log } = launch(program, 5, big);
    const whole = parseLauncherLog(log, big);
    for (const size of [1, 7, 64, 1000]) {
      const parser = new LauncherLogParser(big);
      let previous = '';
      for (let i = 0; i < log.length; i += size) {
        parser.push(Buffer.from(log.slice(i, i + size), 'latin1'));
        const now = parser.live(1 << 20).stdout.text;
        expect(now.startsWith(previous)).toBe(true);
        previous = now;
      }
      const r = parser.result();
      expect(r).toEqual(whole);
      expect(r.stdout.text.startsWith(previous)).toBe(true);
    }
  });

  test('a line longer than any frame is skipped without holding it in memory', () => {
    const parser = new LauncherLogParser(caps);
    parser.push('durable-sandbox-launcher 1\no ');
    for (let i = 0; i < 100; i++) parser.push('A'.repeat(10_000));
    parser.push('\no aGk=\n');
    expect(parser.result().stdout.text).toBe('hi');
  });

  test('a character split across two frames is held back until it is whole', () => {
    const euro = Buffer.from('a€', 'utf8');
    const parser = new LauncherLogParser(caps);
    parser.push(`o ${euro.subarray(0, 2).toString('base64')}\n`);
    expect(parser.live().stdout).toEqual({ text: 'a', end: 1 });
    parser.push(`o ${euro.subarray(2).toString('base64')}\n`);
    expect(parser.live().stdout).toEqual({ text: 'a€', end: 2 });
  });

  test('the live tail carries the newest text and where it ends', () => {
    const parser = new LauncherLogParser({ stdoutCapBytes: 1000, stderrCapBytes: 10 });
    parser.push(`o ${Buffer.from('abcdefghij').toString('base64')}\n`);
    expect(parser.live(4)).toEqual({ stdout: { text: 'ghij', end: 10 }, stderr: { text: '', end: 0 } });
  });
});

describe('unseen: what a live-output reader gets from a tail', () => {
  const tail = (text: string, end: number) => ({ text, end });
  test('the part after what was delivered', () => {
    expect(unseen(tail('hello', 5), 0)).toBe('hello');
    expect(unseen(tail('llo w', 7), 5)).toBe(' w');
    expect(unseen(tail('world', 10), 10)).toBe('');
  });
  test('nothing when the tail starts after it (the reader fell behind): the result supplies the rest in order', () => {
    expect(unseen(tail('xyz', 20), 5)).toBe('');
  });
  test('nothing when the tail ends before it (a restarted step reading the log again)', () => {
    expect(unseen(tail('abc', 3), 8)).toBe('');
    expect(unseen(undefined, 0)).toBe('');
  });
});

describe('output files: the launcher sends what the program left in its out dir, the parser caps it again', () => {
  const fileCaps = {
    stdoutCapBytes: 1024,
    stderrCapBytes: 1024,
    outputFilesMaxCount: 4,
    outputFileCapBytes: 1000,
    outputFilesCapBytes: 1500,
  };

  function launchWithFiles(program: string, outDir: string) {
    const args = coldLauncherArgs(taskDir, {
      command: ['python3', '-c', program],
      timeoutSeconds: 10,
      stdoutCap: 1024,
      stderrCap: 1024,
      outDir,
      filesMaxCount: 4,
      fileCap: 1000,
      filesCap: 1500,
    });
    const log = execFileSync('python3', args, { encoding: 'latin1' });
    return parseLauncherLog(log, fileCaps);
  }

  test('regular files only, nested names kept, text as utf8 and binary as base64, caps and flags', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ds-out-'));
    try {
      const program = [
        'import os',
        `d = ${JSON.stringify(dir)}`,
        'open(os.path.join(d, "a.csv"), "w").write("x,y\\n1,2\\n")',
        'os.makedirs(os.path.join(d, "charts"))',
        'open(os.path.join(d, "charts", "p.png"), "wb").write(bytes([137, 80, 78, 71]) + bytes(range(200)))',
        'open(os.path.join(d, "big.txt"), "w").write("z" * 5000)',
        'open(os.path.join(d, "bad.txt"), "wb").write(b"\\xff\\xfe")',
        'open(os.path.join(d, "zz-late.txt"), "w").write("late")',
        'os.symlink("/etc/passwd", os.path.join(d, "link.txt"))',
        'os.mkfifo(os.path.join(d, "pipe"))',
      ].join('\n');
      const p = launchWithFiles(program, dir);
      const byName = Object.fromEntries(p.files.map((f) => [f.name, f]));
      // Sorted walk: a.csv, bad.txt, big.txt, charts/p.png, link.txt (skipped: symlink), pipe (skipped), zz-late.txt.
      expect(p.files.map((f) => f.name)).toEqual(['a.csv', 'bad.txt', 'big.txt', 'charts/p.png']);
      expect(byName['a.csv']).toEqual({
        name: 'a.csv',
        sizeBytes: 8,
        mimeType: 'text/csv',
        encoding: 'utf8',
        content: 'x,y\n1,2\n',
        truncated: false,
      });
      expect(byName['bad.txt']).toMatchObject({
        encoding: 'base64',
        content: Buffer.from([0xff, 0xfe]).toString('base64'),
        truncated: false,
      });
      expect(byName['big.txt']).toMatchObject({ sizeBytes: 5000, content: 'z'.repeat(1000), truncated: true });
      // The total cap (1500) leaves 1500 - 8 - 2 - 1000 = 490 bytes for the png.
      expect(byName['charts/p.png']).toMatchObject({
        mimeType: 'image/png',
        encoding: 'base64',
        sizeBytes: 204,
        truncated: false,
      });
      expect(Buffer.from(byName['charts/p.png'].content, 'base64').subarray(0, 4)).toEqual(
        Buffer.from([137, 80, 78, 71]),
      );
      expect(p.trailer).toMatchObject({ exitCode: 0 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('forged file frames cannot exceed the caps or escape the out dir', () => {
    const chunk = Buffer.alloc(900, 65).toString('base64');
    const log = [
      'durable-sandbox-launcher 1',
      'f {"name":"../../etc/x","size":10}',
      'b ' + chunk,
      'f {"name":"ok.txt","size":5000}',
      'b ' + chunk,
      'b ' + chunk,
      'f {"name":"two.txt","size":900}',
      'b ' + chunk,
    ].join('\n');
    const p = parseLauncherLog(log, fileCaps);
    expect(p.files.map((f) => f.name)).toEqual(['ok.txt', 'two.txt']);
    expect(p.files[0]).toMatchObject({ truncated: true });
    expect(Buffer.byteLength(p.files[0].content)).toBe(1000);
    // 1500 in all: two.txt gets what is left.
    expect(p.files[1]).toMatchObject({ truncated: true, content: 'A'.repeat(500) });
  });
});

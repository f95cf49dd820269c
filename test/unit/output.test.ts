import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { logReadLimit, parseLauncherLog } from '../../core/output';

const LAUNCHER = path.join(__dirname, '..', '..', 'launcher', 'launcher.py');
const caps = { stdoutCapBytes: 64, stderrCapBytes: 32 };

/** Runs the real launcher on this machine and returns its log and exit code. */
function launch(program: string, timeout = 5, c = caps): { log: string; code: number } {
  try {
    const log = execFileSync(
      'python3',
      [LAUNCHER, '--timeout', String(timeout), '--stdout-cap', String(c.stdoutCapBytes), '--stderr-cap', String(c.stderrCapBytes), '--', 'python3', '-c', program],
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
    const { log, code } = launch('import os, time\nprint("a", flush=True)\nos.close(1)\ntime.sleep(1)\nraise SystemExit(4)');
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

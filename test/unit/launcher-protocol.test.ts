/**
 * The launcher's protocol is written once per side (core/launcher-protocol.ts, the constants at the top of
 * launcher/launcher.py) and documented in docs/LAUNCHER.md: the two sides and the document agree, and the real
 * launcher writes what the TypeScript side reads.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LAUNCHER_EXIT, LAUNCHER_FORMAT, TAG, TASK_FORMAT, TRAILER_FIELDS } from '../../core/launcher-protocol';
import { parseLauncherLog } from '../../core/output';
import { coldLauncherArgs, LAUNCHER } from '../helpers/launcher';

const ROOT = path.join(__dirname, '..', '..');
// The launcher as it ships: its modules assembled into one program.
const source = readFileSync(LAUNCHER, 'utf8');
const doc = readFileSync(path.join(ROOT, 'docs', 'LAUNCHER.md'), 'utf8');

/** A constant assigned at the top level of launcher.py: `NAME = value`. */
function pythonConstant(name: string): string {
  const m = new RegExp(`^${name} = (.+?)(\\s+#.*)?$`, 'm').exec(source);
  if (!m) throw new Error(`launcher.py has no ${name}`);
  return m[1];
}
const pyString = (name: string) => JSON.parse(pythonConstant(name)) as string;

test('both sides name the same formats, tags and exit codes', () => {
  expect(pyString('FORMAT')).toBe(LAUNCHER_FORMAT);
  expect(pyString('TASK_FORMAT')).toBe(TASK_FORMAT);
  expect({
    stdout: pyString('TAG_STDOUT'),
    stderr: pyString('TAG_STDERR'),
    accepted: pyString('TAG_ACCEPTED'),
    fileHeader: pyString('TAG_FILE_HEADER'),
    fileData: pyString('TAG_FILE_DATA'),
    trailer: pyString('TAG_TRAILER'),
    session: pyString('TAG_SESSION'),
    display: pyString('TAG_DISPLAY'),
    checkpoint: pyString('TAG_CHECKPOINT'),
  }).toEqual(TAG);
  expect(new Set(Object.values(TAG)).size).toBe(Object.values(TAG).length);
  expect(Number(pythonConstant('DELIVERY_FAILED'))).toBe(LAUNCHER_EXIT.deliveryFailed);
  expect(Number(pythonConstant('REFUSED'))).toBe(LAUNCHER_EXIT.refused);
  expect(Number(pythonConstant('IDLE_EXIT'))).toBe(LAUNCHER_EXIT.idle);
  const fields = /^TRAILER_FIELDS = \(([^)]*)\)/m.exec(source)![1];
  expect([...fields.matchAll(/"(\w+)"/g)].map((m) => m[1])).toEqual([...TRAILER_FIELDS]);
});

test('the program never writes a line by a literal tag: every frame goes through the named constants', () => {
  expect(source).not.toMatch(/write_line\("[a-z] /);
});

test('docs/LAUNCHER.md documents every tag, every trailer field and every exit code', () => {
  for (const tag of Object.values(TAG)) expect(doc).toContain(`| \`${tag} \``);
  for (const field of TRAILER_FIELDS) expect(doc).toContain(`\`${field}\``);
  for (const code of Object.values(LAUNCHER_EXIT)) expect(doc).toMatch(new RegExp(`\\| ${code} \\|`));
  expect(doc).toContain(LAUNCHER_FORMAT);
  expect(doc).toContain(TASK_FORMAT);
});

test('the real launcher writes what the TypeScript side reads: streams, an output file, the whole trailer', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ds-protocol-'));
  try {
    const out = path.join(dir, 'out');
    const program = path.join(dir, 'main.py');
    writeFileSync(
      program,
      `import os, sys\nos.makedirs(${JSON.stringify(out)}, exist_ok=True)\n` +
        `open(os.path.join(${JSON.stringify(out)}, "r.txt"), "w").write("file")\nprint("out")\nprint("err", file=sys.stderr)\n`,
    );
    const caps = { stdoutCapBytes: 1024, stderrCapBytes: 1024 };
    const r = spawnSync(
      'python3',
      coldLauncherArgs(dir, {
        command: ['python3', program],
        timeoutSeconds: 10,
        stdoutCap: 1024,
        stderrCap: 1024,
        outDir: out,
        filesMaxCount: 5,
        fileCap: 1024,
        filesCap: 4096,
      }),
      { encoding: 'latin1', timeout: 20_000 },
    );
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(LAUNCHER_FORMAT);
    for (const line of lines.slice(1)) expect(Object.values(TAG)).toContain(line[0]);
    const trailerLine = lines[lines.length - 1];
    expect(trailerLine[0]).toBe(TAG.trailer);
    const trailer = JSON.parse(trailerLine.slice(2)) as Record<string, unknown>;
    expect(Object.keys(trailer)).toEqual([...TRAILER_FIELDS]);
    expect(trailer).toMatchObject({ exitCode: 0, files: 1, filesSkipped: 0, error: null });
    const parsed = parseLauncherLog(r.stdout, {
      ...caps,
      outputFilesMaxCount: 5,
      outputFileCapBytes: 1024,
      outputFilesCapBytes: 4096,
    });
    expect(parsed.stdout.text).toBe('out\n');
    expect(parsed.stderr.text).toBe('err\n');
    expect(parsed.files.map((f) => f.name)).toEqual(['r.txt']);
    expect(parsed.trailer).toMatchObject({ exitCode: 0, timedOut: false, stdoutBytes: 4, stderrBytes: 4, error: null });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a mounted task that cannot be read, or lacks what to run, runs nothing and says why', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ds-task-'));
  try {
    const missing = spawnSync('python3', [LAUNCHER, '--task', path.join(dir, 'none.json')], { encoding: 'latin1' });
    expect(missing.status).toBe(LAUNCHER_EXIT.deliveryFailed);
    expect(parseLauncherLog(missing.stdout, { stdoutCapBytes: 64, stderrCapBytes: 64 }).trailer).toMatchObject({
      exitCode: LAUNCHER_EXIT.deliveryFailed,
      error: expect.stringMatching(/task file cannot be read/),
    });
    const file = path.join(dir, 'task.json');
    writeFileSync(file, JSON.stringify({ command: ['python3', '-c', 'print(1)'], stdoutCap: 64, stderrCap: 64 }));
    const bad = spawnSync('python3', [LAUNCHER, '--task', file], { encoding: 'latin1' });
    expect(bad.status).toBe(LAUNCHER_EXIT.deliveryFailed);
    expect(bad.stdout).not.toMatch(/^o /m);
    expect(parseLauncherLog(bad.stdout, { stdoutCapBytes: 64, stderrCapBytes: 64 }).trailer?.error).toMatch(
      /bad task: 'timeoutSeconds'/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

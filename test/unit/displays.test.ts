/**
 * Display data end to end on this machine: a program's display() calls through the real launcher (its pipe, its
 * caps, its framing in the log) into the parser, and the pure helpers every surface uses to show a bundle.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../cli/local-stack';
import { displayFileName, displayImages, displayText, droppedDisplaysNote } from '../../core/displays';
import { collectedOutput, LauncherLogParser, parseLauncherLog } from '../../core/output';
import { coldLauncherArgs } from '../helpers/launcher';

let taskDir: string;
beforeEach(() => (taskDir = mkdtempSync(path.join(os.tmpdir(), 'ds-task-'))));
afterEach(() => rmSync(taskDir, { recursive: true, force: true }));

const caps = { stdoutCapBytes: 4096, stderrCapBytes: 4096, displaysMaxCount: 3, displaysCapBytes: 200_000 };

function launch(program: string, c = caps): string {
  try {
    return execFileSync(
      'python3',
      coldLauncherArgs(taskDir, {
        command: ['python3', '-c', program],
        timeoutSeconds: 20,
        stdoutCap: c.stdoutCapBytes,
        stderrCap: c.stderrCapBytes,
        displaysMaxCount: c.displaysMaxCount,
        displaysCap: c.displaysCapBytes,
      }),
      { encoding: 'utf8' },
    );
  } catch (e) {
    return (e as { stdout: string }).stdout;
  }
}

const RICH = `
class Chart:
    def _repr_png_(self):
        return b"\\x89PNG\\r\\n\\x1a\\n" + bytes(range(256)) * 400
    def _repr_html_(self):
        return "<b>chart</b>"
    def __repr__(self):
        return "Chart()"
`;

test('display() of a rich object sends its MIME bundle (image as base64, html, plain text), whole across chunks', () => {
  const p = parseLauncherLog(launch(`${RICH}\ndisplay(Chart())\nprint("after")`), caps);
  expect(p.stdout.text).toBe('after\n');
  expect(p.displays).toHaveLength(1);
  const png = Buffer.from(p.displays[0]['image/png'], 'base64');
  expect(png.length).toBe(8 + 256 * 400); // past one log chunk: reassembled
  expect(png.subarray(0, 4).toString('latin1')).toBe('\x89PNG');
  expect(p.displays[0]).toMatchObject({ 'text/html': '<b>chart</b>', 'text/plain': 'Chart()' });
  expect(p.displaysTotal).toBe(1);
});

test('plain values display as text; several in one call keep their order', () => {
  const p = parseLauncherLog(launch('display(1, "two", {"three": 3})'), caps);
  expect(p.displays.map((d) => d['text/plain'])).toEqual(['1', "'two'", "{'three': 3}"]);
});

test('past the count cap: the first are kept, the rest counted, and the note says which limit', () => {
  const p = parseLauncherLog(launch('for i in range(5):\n    display(i)'), caps);
  expect(p.displays.map((d) => d['text/plain'])).toEqual(['0', '1', '2']);
  expect(p.displaysTotal).toBe(5);
  const collected = collectedOutput(p, 0);
  expect(collected).toMatchObject({ displaysTotal: 5 });
  expect(droppedDisplaysNote({ total: 5, dropped: 2 })).toMatch(/2 of 5 displays.*DS_DISPLAYS_MAX_COUNT/);
  expect(droppedDisplaysNote({ total: 3, dropped: 0 })).toBeUndefined();
});

test("past the byte cap: one display too big comes as its text alone, marked; past the run's total, dropped", () => {
  const small = { ...caps, displaysMaxCount: 10, displaysCapBytes: 4096 };
  const p = parseLauncherLog(
    launch(`${RICH}\ndisplay(Chart())\nfor i in range(3):\n    display("x" * 1500)\ndisplay("last")`, small),
    small,
  );
  expect(p.displays[0]).toEqual({ 'text/plain': 'Chart()', 'durable-sandbox/truncated': 'true' });
  // Two of the three 1.5 KB displays fit the run's 4 KiB; the small one after them still does.
  expect(p.displays.slice(1).map((d) => d['text/plain'].length)).toEqual([1502, 1502, 6]);
  expect(p.displaysTotal).toBe(5);
});

test('a program that writes garbage to the display pipe breaks only its displays, never its output or exit code', () => {
  const log = launch(
    'import os\ndisplay("kept")\nos.write(int(os.environ["DS_DISPLAY_FD"]), b"not a frame at all")\ndisplay("lost")\nprint("still here")\nraise SystemExit(3)',
  );
  const p = parseLauncherLog(log, caps);
  expect(p.stdout.text).toBe('still here\n');
  expect(p.trailer?.exitCode).toBe(3);
  expect(p.displays.map((d) => d['text/plain'])).toEqual(["'kept'"]);
});

test('a display cut short in the log (the read stopped) is not returned half', () => {
  const log = launch(`${RICH}\ndisplay(Chart())`);
  const cut = log.slice(0, log.indexOf('\nb ') + 200);
  expect(parseLauncherLog(cut, caps, false).displays).toEqual([]);
});

test('live output carries the newest displays as they come', () => {
  const parser = new LauncherLogParser(caps);
  parser.push(launch('for i in range(3):\n    display(i)'));
  expect(parser.live().displays).toEqual({
    count: 3,
    recent: [0, 1, 2].map((i) => ({ index: i, bundle: { 'text/plain': String(i) } })),
  });
});

test('each surface shows a bundle: images, its best text, and the files it is saved as', () => {
  const bundle = { 'image/png': 'iVBOR', 'text/markdown': '**m**', 'text/plain': 'p' };
  expect(displayImages(bundle)).toEqual([{ mimeType: 'image/png', data: 'iVBOR' }]);
  expect(displayText(bundle)).toBe('**m**');
  expect(displayText({ 'text/plain': 'p' })).toBe('p');
  expect(displayFileName(0, 'image/png')).toBe('display-1.png');
  expect(displayFileName(2, 'text/html')).toBe('display-3.html');
  expect(displayFileName(0, 'application/x-weird', 4)).toBe('display-1-4.bin');
});

describe('Node.js programs (the launcher preloads display, TypeScript and top-level await)', () => {
  function node(file: string, source: string, c = caps): string {
    const program = path.join(taskDir, file);
    writeFileSync(program, source);
    try {
      return execFileSync(
        'python3',
        coldLauncherArgs(taskDir, {
          command: ['node', program],
          env: { NODE_PATH: path.join(PROJECT_ROOT, 'node_modules') },
          timeoutSeconds: 30,
          stdoutCap: c.stdoutCapBytes,
          stderrCap: c.stderrCapBytes,
          displaysMaxCount: c.displaysMaxCount,
          displaysCap: c.displaysCapBytes,
        }),
        { encoding: 'utf8', env: { ...process.env, TMPDIR: taskDir } },
      );
    } catch (e) {
      return (e as { stdout: string }).stdout;
    }
  }

  test('JavaScript: display() of a value, of a raw bundle with a Buffer, and of an object with a display form', () => {
    const p = parseLauncherLog(
      node(
        'main.js',
        [
          'display({ a: 1 });',
          "display({ 'image/png': Buffer.from([137, 80, 78, 71]), 'text/plain': 'a png' }, { raw: true });",
          "display({ [Symbol.for('Jupyter.display')]: () => ({ 'text/html': '<i>x</i>', 'text/plain': 'x' }) });",
          "console.log('done');",
        ].join('\n'),
      ),
      caps,
    );
    expect(p.stdout.text).toBe('done\n');
    expect(p.displays).toEqual([
      { 'application/json': '{"a":1}', 'text/plain': '{ a: 1 }' },
      { 'image/png': 'iVBORw==', 'text/plain': 'a png' },
      { 'text/html': '<i>x</i>', 'text/plain': 'x' },
    ]);
  });

  test('JavaScript: a program may await at its top level', () => {
    const p = parseLauncherLog(
      node('main.js', 'const v = await new Promise((r) => setTimeout(() => r(42), 10));\nconsole.log(v);'),
      caps,
    );
    expect([p.stdout.text, p.trailer?.exitCode]).toEqual(['42\n', 0]);
  });

  test('TypeScript: a typed program runs (top-level await too); a type error fails it with the file and line', () => {
    const ok = parseLauncherLog(
      node('main.ts', 'const n: number = await Promise.resolve(41);\nconsole.log(n + 1);\ndisplay(n);'),
      caps,
    );
    expect([ok.stdout.text, ok.stderr.text, ok.trailer?.exitCode]).toEqual(['42\n', '', 0]);
    expect(ok.displays).toEqual([{ 'text/plain': '41' }]);
    const bad = parseLauncherLog(node('main.ts', 'const a = 1;\nconst s: string = a;\nconsole.log("ran");'), caps);
    expect(bad.trailer?.exitCode).toBe(1);
    expect(bad.stdout.text).toBe('');
    expect(bad.stderr.text).toMatch(/main\.ts\(2,7\): error TS2322: Type 'number' is not assignable to type 'string'/);
  });
});

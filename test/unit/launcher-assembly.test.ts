/**
 * The launcher is written as modules and ships as one program (core/launcher-assembly.ts): the assembly defines every
 * name before the top level uses it, carries each kernel as a string, and runs the same in a checkout and assembled.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assembleLauncher } from '../../core/launcher-assembly';
import { readLauncherFiles } from '../../worker/worker';
import { coldLauncherArgs, LAUNCHER } from '../helpers/launcher';

test('modules in the order their imports need them, standard imports once, each kernel as a string', () => {
  const program = assembleLauncher(
    {
      'main.py': '"""doc"""\nimport os\nfrom b import *  # noqa\nfrom a import *\n\nprint(B, A, K)\n',
      'a.py': '"""a"""\nimport os\nimport sys\n\nA = 1\nK = kernel_source("k.sh")\n',
      'b.py': 'import json\nfrom a import *\n\nB = A + 1\n',
      'kernels/k.sh': 'echo "$1"\n',
    },
    'main.py',
  );
  expect(program.startsWith('"""doc"""\n')).toBe(true);
  expect(program).toContain('\nimport os\nimport sys\nimport json\n');
  expect(program.match(/^import os$/gm)).toHaveLength(1);
  expect(program.indexOf('A = 1')).toBeLessThan(program.indexOf('B = A + 1'));
  expect(program.indexOf('B = A + 1')).toBeLessThan(program.indexOf('print(B, A, K)'));
  expect(program).toContain(`K = r'''echo "$1"\n'''`);
  expect(program).not.toMatch(/^from [ab] import/m);
  const run = spawnSync('python3', ['-c', program], { encoding: 'utf8' });
  expect(run.stdout).toBe('2 1 echo "$1"\n\n');
});

test('a missing module, a cycle and a kernel that cannot be carried are refused', () => {
  expect(() => assembleLauncher({ 'main.py': 'from a import *\n' }, 'main.py')).not.toThrow(); // not a module here: kept
  expect(() => assembleLauncher({ 'main.py': 'x = kernel_source("none.py")\n' }, 'main.py')).toThrow(/missing/);
  expect(() =>
    assembleLauncher(
      { 'main.py': 'from a import *\n', 'a.py': 'from b import *\n', 'b.py': 'from a import *\n' },
      'main.py',
    ),
  ).toThrow(/cycle/);
  expect(() =>
    assembleLauncher({ 'main.py': 'x = kernel_source("k.py")\n', 'kernels/k.py': "s = '''x'''\n" }, 'main.py'),
  ).toThrow(/cannot be carried/);
});

test('the shipped launcher and the checkout run a program alike', () => {
  const files = readLauncherFiles();
  expect(Object.keys(files)).toEqual(
    expect.arrayContaining(['launcher.py', 'protocol.py', 'session.py', 'kernels/python.py']),
  );
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ds-assembly-'));
  try {
    writeFileSync(path.join(dir, 'main.py'), 'import sys\nprint("out")\nprint("err", file=sys.stderr)\nsys.exit(3)\n');
    const args = coldLauncherArgs(dir, {
      command: ['python3', path.join(dir, 'main.py')],
      timeoutSeconds: 10,
      stdoutCap: 100,
      stderrCap: 100,
    });
    const shipped = spawnSync('python3', args, { encoding: 'utf8' });
    const checkout = spawnSync(
      'python3',
      [path.join(__dirname, '..', '..', 'launcher', 'launcher.py'), ...args.slice(1)],
      {
        encoding: 'utf8',
      },
    );
    // The two streams are read apart, so their lines may come in either order; each stream's own order is kept.
    const strip = (s: string) =>
      s
        .replace(/"(startedAt|finishedAt)":\d+/g, '')
        .split('\n')
        .sort((a, b) => (a[0] === b[0] ? 0 : a < b ? -1 : 1))
        .join('\n');
    expect(args[0]).toBe(LAUNCHER);
    expect(shipped.status).toBe(3);
    expect(checkout.status).toBe(3);
    expect(strip(shipped.stdout)).toBe(strip(checkout.stdout));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

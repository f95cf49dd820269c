/**
 * JavaScript and TypeScript (Node.js), languages added by entries in core/languages.ts plus their image: through the
 * CLI as a user runs them, cold and warm, under gVisor; files in and out; the languages' names and file endings;
 * TypeScript type-checked before it runs; sessions that keep Node's interpreter (state, `require`, top-level await,
 * a run's limit, state rebuilt on a new pod); TypeScript's own hostile cases. The hostile suite has the JavaScript
 * cases (hostile.suite.ts), MCP and ADK theirs (mcp.test.ts, adk.test.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionResult } from '../../client';
import { runCli, type Ran } from '../helpers/cli';
import {
  adminKube,
  deleteSessionPod,
  leftoversAfterCompletion,
  NOTHING_LEFT,
  poolHasReady,
  startWorker,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(180_000);
const kube = adminKube();
let w: TestWorker;
let tmp: string;

beforeAll(async () => {
  // A JavaScript pool of one pod, no other pool: the node's CPU goes to what this file runs.
  w = await startWorker({ DS_WARM_POOL_SIZE: '0', DS_WARM_POOL_SIZE_JAVASCRIPT: '1' });
  tmp = mkdtempSync(path.join(os.tmpdir(), 'ds-js-'));
}, 120_000);
afterAll(async () => {
  await w?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function cli(args: string[]): Promise<Ran> {
  return runCli(args, { cwd: tmp, env: { DS_TASK_QUEUE: w.config.temporal.taskQueue } });
}

async function json(args: string[]): Promise<{ code: number | null; result: ExecutionResult }> {
  const r = await cli([...args, '--json', '--worker', 'no']);
  return { code: r.code, result: JSON.parse(r.stdout) as ExecutionResult };
}

test('run -l javascript -e: 42, on a warm pool pod and on a cold Job, both under gVisor', async () => {
  await poolHasReady(w, 'javascript', 120_000);
  const warm = await cli(['run', '-l', 'javascript', '-e', 'console.log(6*7)', '--worker', 'no']);
  expect(warm).toMatchObject({ code: 0, stdout: '42\n' });

  const probe =
    'console.log(6*7); console.log(require("node:child_process").execSync("dmesg").toString().split("\\n")[0])';
  await poolHasReady(w, 'javascript', 120_000);
  await new Promise((r) => setTimeout(r, 500)); // a claim reads the apiserver's watch cache, which may lag a moment
  const w2 = await json(['run', '-l', 'javascript', '-e', probe]);
  const cold = await json(['run', '-l', 'javascript', '-e', probe, '--memory', '256Mi']);
  for (const [r, sandbox] of [
    [w2, 'warm'],
    [cold, 'cold'],
  ] as const) {
    expect(r.code).toBe(0);
    expect(r.result).toMatchObject({ status: 'succeeded', exitCode: 0, sandbox, language: 'javascript' });
    expect(r.result.stdout).toMatch(/^42\n.*Starting gVisor/);
    expect(await leftoversAfterCompletion(kube, w.client, r.result.executionId)).toEqual(NOTHING_LEFT);
  }
});

test('a .js file is JavaScript without --language; an input file in, an output file written by Node back', async () => {
  writeFileSync(path.join(tmp, 'data.csv'), 'a,b\n1,2\n3,4\n');
  writeFileSync(
    path.join(tmp, 'sum.js'),
    [
      'const fs = require("node:fs");',
      'const rows = fs.readFileSync("/sandbox/files/data.csv", "utf8").trim().split("\\n").slice(1);',
      'const total = rows.map((r) => r.split(",").map(Number)).flat().reduce((a, b) => a + b, 0);',
      'fs.writeFileSync("/sandbox/out/total.json", JSON.stringify({ total }));',
      'console.log("total", total);',
    ].join('\n'),
  );
  const r = await cli(['run', 'sum.js', '--file', 'data.csv', '--save-files', 'out', '--worker', 'no']);
  expect(r).toMatchObject({ code: 0, stdout: 'total 10\n' });
  expect(JSON.parse(readFileSync(path.join(tmp, 'out', 'total.json'), 'utf8'))).toEqual({ total: 10 });
});

test("an uncaught exception is the program's failure: exit 1, the stack trace on stderr, not retried", async () => {
  const { code, result } = await json(['run', '-l', 'js', '-e', 'throw new Error("boom")']);
  expect(code).toBe(1);
  expect(result).toMatchObject({ status: 'failed', exitCode: 1, attempts: 1, language: 'javascript' });
  expect(result.stderr).toMatch(/Error: boom/);
});

test('an unknown language is a usage error that names the choices', async () => {
  const r = await cli(['run', '-l', 'ruby', '-e', 'puts 1', '--worker', 'no']);
  expect(r.code).toBe(64);
  expect(r.stderr).toMatch(/--language: python, bash, javascript or typescript, not "ruby"/);
});

describe('TypeScript', () => {
  test('a .ts file is TypeScript: type-checked, then run (top-level await too), on the JavaScript pool', async () => {
    writeFileSync(
      path.join(tmp, 'typed.ts'),
      'interface Row { a: number }\nconst rows: Row[] = [{ a: 40 }, { a: 2 }];\nconst n: number = await Promise.resolve(rows.reduce((s, r) => s + r.a, 0));\nconsole.log(n);',
    );
    await poolHasReady(w, 'javascript', 120_000);
    await new Promise((r) => setTimeout(r, 500));
    const r = await json(['run', 'typed.ts']);
    expect(r.code).toBe(0);
    expect(r.result).toMatchObject({ status: 'succeeded', stdout: '42\n', stderr: '', language: 'typescript' });
    expect(r.result.sandbox).toBe('warm');
    expect(await leftoversAfterCompletion(kube, w.client, r.result.executionId)).toEqual(NOTHING_LEFT);
  });

  test('a type error fails the run with its file and line, and nothing of the program ran', async () => {
    const code =
      'require("fs").writeFileSync("/sandbox/out/ran.txt", "ran");\nconst s: string = 42;\nconsole.log("ran");';
    const { code: exit, result } = await json(['run', '-l', 'ts', '-e', code]);
    expect(exit).toBe(1);
    expect(result).toMatchObject({ status: 'failed', exitCode: 1, stdout: '', attempts: 1, outputFiles: [] });
    expect(result.stderr).toMatch(/main\.ts\(2,7\): error TS2322: Type 'number' is not assignable to type 'string'/);
  });

  test('hostile: a type the checker cannot finish, and a program that spins, are stopped at the limit; the node serves on', async () => {
    // Each level doubles the type: the checker either gives up (an error) or runs into the time limit.
    const explode =
      'type D<T, N extends unknown[]> = N["length"] extends 40 ? T : D<[T, T], [...N, 0]>;\nconst d: D<1, []> = null as any;\nconst s: string = d;';
    const checked = await json(['run', '-l', 'typescript', '-e', explode, '--timeout', '20']);
    expect(['failed', 'timed_out']).toContain(checked.result.status);
    expect(checked.result.stdout).toBe('');
    const spin = await json(['run', '-l', 'typescript', '-e', 'let i: number = 0;\nfor (;;) i++;', '--timeout', '5']);
    expect(spin.result).toMatchObject({ status: 'timed_out', attempts: 1 });
    // The program cannot turn its own checks off: a tampered preload is the program's own process, nothing else's.
    const tamper = await json([
      'run',
      '-l',
      'ts',
      '-e',
      'const fs = require("fs");\nfor (const p of ["/sandbox/main.ts", "/usr/share/nodejs/typescript/package.json"]) {\n  try { fs.appendFileSync(p, "x"); console.log(p, "written"); } catch (e: any) { console.log(p, e.code); }\n}',
    ]);
    expect(tamper.result.stdout).toMatch(
      /^\/sandbox\/main\.ts (EROFS|EACCES)\n\/usr\/share\/nodejs\/typescript\/package\.json (EROFS|EACCES)\n$/,
    );
    for (const r of [checked, spin, tamper])
      expect(await leftoversAfterCompletion(kube, w.client, r.result.executionId)).toEqual(NOTHING_LEFT);
    const after = await json(['run', '-l', 'ts', '-e', 'const n: number = 6 * 7; console.log(n)']);
    expect(after.result).toMatchObject({ status: 'succeeded', stdout: '42\n' });
  });
});

describe("sessions keep Node's interpreter", () => {
  test("JavaScript: variables, require and top-level await persist; a trailing value is shown; a run's limit ends the run, not the session", async () => {
    const session = await w.client.openSession({ language: 'javascript' });
    try {
      expect((await session.run('let x = 6')).stdout).toBe('');
      expect((await session.run('x * 7')).stdout).toBe('42\n');
      await session.run("const fs = require('fs')");
      expect((await session.run("fs.existsSync('/sandbox')")).stdout).toBe('true\n');
      const awaited = await session.run('const v = await new Promise((r) => setTimeout(() => r(x + 1), 50))\nv');
      expect(awaited.stdout).toBe('7\n');
      const spin = await session.run('while (true) {}', { timeoutSeconds: 2 });
      expect(spin).toMatchObject({ status: 'timed_out' });
      const after = await session.run('[x, v, typeof fs.readFileSync]');
      expect(after).toMatchObject({ status: 'succeeded', stdout: "[ 6, 7, 'function' ]\n" });
      expect(after.session?.interpreter).toBe('kept');
    } finally {
      await session.close();
    }
  });

  test('JavaScript: the pod deleted between runs: the next run gets a new pod with the state rebuilt', async () => {
    const session = await w.client.openSession({ language: 'javascript' });
    try {
      const first = await session.run('let count = 41\nconst os = require("os")');
      await deleteSessionPod(kube, session.id, first.session.pod);
      const next = await session.run('count + 1');
      expect(next).toMatchObject({ status: 'succeeded', stdout: '42\n' });
      expect(next.session).toMatchObject({ interpreter: 'restarted', restored: { runs: 1 } });
      expect(next.session.pod).not.toBe(first.session.pod);
    } finally {
      await session.close();
    }
  });

  test('TypeScript: `const n: number = 42; n` shows 42; a type error fails the run with its line; the session goes on', async () => {
    const session = await w.client.openSession({ language: 'typescript' });
    try {
      expect((await session.run('const n: number = 42; n')).stdout).toBe('42\n');
      const bad = await session.run('const s: string = n');
      expect(bad).toMatchObject({ status: 'failed', exitCode: 1, stdout: '' });
      expect(bad.stderr).toMatch(/<run \d+>\(1,7\): error TS2322/);
      expect((await session.run('n + 1')).stdout).toBe('43\n');
    } finally {
      await session.close();
    }
  });
});

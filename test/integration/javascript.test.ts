/**
 * JavaScript (Node.js), the language added by one entry in core/languages.ts plus its image: through the CLI as a
 * user runs it, cold and warm, under gVisor; files in and out; the language's name and file endings. The hostile
 * suite has its JavaScript cases (hostile.suite.ts), MCP and ADK theirs (mcp.test.ts, adk.test.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionResult } from '../../client';
import { runCli, type Ran } from '../helpers/cli';
import {
  adminKube,
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
  expect(r.stderr).toMatch(/--language: python, bash or javascript, not "ruby"/);
});

/**
 * The CLI as a user runs it: `bin/durable-sandbox.js` in a child process, against the real stack and a real worker
 * (this file's, on a task queue of its own), output on pipes (so progress comes as plain lines).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EXIT } from '../../cli/exit-codes';
import { runCli, type Ran } from '../helpers/cli';
import { startWorker, uniqueId, type TestWorker } from '../helpers/stack';

jest.setTimeout(180_000);
let w: TestWorker;
let tmp: string;

beforeAll(async () => {
  w = await startWorker();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'ds-cli-'));
});
afterAll(async () => {
  await w?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

function cli(args: string[], env: Record<string, string> = {}): Promise<Ran> {
  return runCli(args, { env: { DS_TASK_QUEUE: w.config.temporal.taskQueue, ...env } });
}

test('run -e: the output on stdout, progress as plain lines on stderr, exit 0', async () => {
  const r = await cli(['run', '-e', 'print(6 * 7)']);
  expect(r.code).toBe(0);
  expect(r.stdout).toBe('42\n');
  expect(r.stderr).toMatch(/\[durable-sandbox\] (starting|running): /);
  expect(r.stderr).toMatch(/\[durable-sandbox\] succeeded \(exit 0\)/);
});

test("the program's exit code is the process's; timed_out and oom_killed have codes of their own", async () => {
  expect((await cli(['run', '-e', 'import sys\nprint("out")\nprint("err", file=sys.stderr)\nsys.exit(3)'])).code).toBe(
    3,
  );
  expect((await cli(['run', '-e', 'import time\ntime.sleep(60)', '--timeout', '2'])).code).toBe(EXIT.timedOut);
  expect(
    (await cli(['run', '-e', 'x = []\nwhile True:\n    x.append(bytearray(16 << 20))', '--memory', '64Mi'])).code,
  ).toBe(EXIT.oomKilled);
});

test('a file program, an input file, env, output files saved, --json', async () => {
  const program = path.join(tmp, 'prog.sh');
  writeFileSync(program, 'cat /sandbox/files/in.txt; echo "$GREETING"; echo made > /sandbox/out/made.txt\n');
  const input = path.join(tmp, 'in.txt');
  writeFileSync(input, 'from a file\n');
  const saved = path.join(tmp, 'saved');
  const r = await cli(['run', program, '--file', input, '--env', 'GREETING=hi', '--save-files', saved, '--json']);
  expect(r.code).toBe(0);
  const result = JSON.parse(r.stdout);
  expect(result).toMatchObject({ status: 'succeeded', language: 'bash', stdout: 'from a file\nhi\n' });
  expect(result.outputFiles.map((f: { name: string }) => f.name)).toEqual(['made.txt']);
  expect(readFileSync(path.join(saved, 'made.txt'), 'utf8')).toBe('made\n');
});

test('status, cancel and list', async () => {
  const id = uniqueId('cli');
  const running = cli([
    'run',
    '-e',
    'import time\nprint("working", flush=True)\ntime.sleep(120)',
    '--id',
    id,
    '--timeout',
    '300',
  ]);
  // Wait until it runs, then look at it and cancel it from other processes.
  for (let i = 0; i < 120; i++) {
    const s = await cli(['status', id, '--json']);
    if (
      s.code === 0 &&
      JSON.parse(s.stdout).state === 'running' &&
      JSON.parse(s.stdout).output?.stdout?.text === 'working\n'
    )
      break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const status = await cli(['status', id]);
  expect(status.stdout).toMatch(new RegExp(`^${id}: running: running`));
  expect(status.stdout).toContain('working');
  expect((await cli(['cancel', id])).code).toBe(0);
  const r = await running;
  expect(r.code).toBe(EXIT.cancelled);
  expect(r.stdout).toBe('working\n');
  const list = await cli(['list', '--limit', '50']);
  expect(list.stdout).toMatch(new RegExp(`cancelled\\s+python\\s+${id}`));
});

test('with no worker: it says it waits for one, and --wait gives up with its own code, the execution left queued', async () => {
  const queue = uniqueId('nobody');
  const id = uniqueId('queued');
  const r = await cli(['run', '-e', 'print(1)', '--id', id, '--worker', 'no', '--wait', '3'], { DS_TASK_QUEUE: queue });
  expect(r.code).toBe(EXIT.stoppedWaiting);
  expect(r.stderr).toContain(`waiting for a worker on task queue ${queue} (none polling`);
  expect(r.stderr).toContain(`execution ${id} is queued`);
  await w.client.temporal.workflow.getHandle(id).terminate('test: nobody will serve this queue');
});

test('bad input and an unreachable Temporal end with their own codes and say why', async () => {
  const bad = await cli(['run', '-e', 'print(1)', '--timeout', '999999']);
  expect(bad.code).toBe(EXIT.invalidInput);
  expect(bad.stderr).toMatch(/timeoutSeconds.*max 3600/);
  const away = await cli(['status', 'x'], { TEMPORAL_ADDRESS: '127.0.0.1:1', TEMPORAL_NAMESPACE: 'nowhere' });
  expect(away.code).toBe(EXIT.unavailable);
  expect(away.stderr).toMatch(/Temporal at 127\.0\.0\.1:1 \(namespace "nowhere"\) is not reachable/);
  const usage = await cli(['frobnicate']);
  expect(usage.code).toBe(EXIT.usage);
});

test('session open, run (state kept from run to run), list, close; a run after close and a missing worker have their own codes', async () => {
  const opened = await cli(['session', 'open', '--idle', '120']);
  expect(opened.code).toBe(0);
  const id = opened.stdout.trim();
  expect(id).toMatch(/^session-[0-9a-f-]+$/);
  try {
    const first = await cli(['session', 'run', id, '-e', 'import math\nx = 6 * 7\nx']);
    expect(first).toMatchObject({ code: 0, stdout: '42\n' });
    const program = path.join(tmp, 'second.py');
    writeFileSync(program, 'print(x, round(math.pi, 2))\n');
    expect(await cli(['session', 'run', id, program])).toMatchObject({ code: 0, stdout: '42 3.14\n' });
    const failing = await cli(['session', 'run', id, '-e', 'import sys\nprint("bad", file=sys.stderr)\nsys.exit(3)']);
    expect(failing.code).toBe(3);
    expect(failing.stderr).toContain('bad\n');
    const json = await cli(['session', 'run', id, '-e', 'x + 1', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({ sessionId: id, seq: 4, stdout: '43\n', status: 'succeeded' });
    const listed = await cli(['session', 'list', '--json']);
    expect(JSON.parse(listed.stdout)).toContainEqual(expect.objectContaining({ sessionId: id, runs: 4 }));
  } finally {
    const closed = await cli(['session', 'close', id]);
    expect(closed.code).toBe(0);
    expect(closed.stdout).toContain(`${id}: closed`);
  }
  const after = await cli(['session', 'run', id, '-e', 'print(x)']);
  expect(after.code).toBe(EXIT.noSession);
  expect(after.stderr).toContain(`session ${id} is closed`);
  const none = await cli(['session', 'run', 'session-that-never-was', '-e', '1']);
  expect(none.code).toBe(EXIT.noSession);
  expect(none.stderr).toContain('there is no session session-that-never-was');
  // --worker no starts no background worker: with none serving, nothing is opened.
  const noWorker = await cli(['session', 'open', '--worker', 'no'], { DS_TASK_QUEUE: uniqueId('test-cli-nobody') });
  expect(noWorker.code).toBe(EXIT.unavailable);
  expect(noWorker.stderr).toContain('NoWorker');
  expect(noWorker.stderr).toContain('nothing ran');
  expect(noWorker.stdout).toBe('');
});

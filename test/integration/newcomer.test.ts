/**
 * What a newcomer meets with no worker running, on the real stack: the README's session quick start, run verbatim in
 * a pseudo-terminal, and two MCP servers started at once (just after another worker of the queue went away, so that
 * Temporal still lists its poller). Both are served by the background worker the CLI starts
 * (cli/background-worker.ts), and once everything is closed and it has stopped by itself, nothing is left: no
 * process, no pod, no open workflow.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client as McpClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { SandboxClient } from '../../client';
import { askBackground, backgroundNotes } from '../../cli/background-worker';
import { PROJECT_ROOT } from '../../cli/local-stack';
import { LABELS, MANAGED_BY } from '../../core/names';
import { loadConfig } from '../../worker/config';
import { adminKube, eventually, SANDBOX_NAMESPACE, startWorker, uniqueId } from '../helpers/stack';

jest.setTimeout(300_000);
const kube = adminKube();
const BIN = path.join(PROJECT_ROOT, 'bin', 'durable-sandbox.js');
/** The background worker of these tests stops this soon after its queue's last session or execution ends. */
const IDLE_SECONDS = '5';

const { temporal, policy } = loadConfig(process.env);
const clients: SandboxClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
});

async function clientOf(taskQueue: string): Promise<SandboxClient> {
  const c = await SandboxClient.connect({ temporal, taskQueue, policy });
  clients.push(c);
  return c;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** What is left of a task queue: open workflows, sandbox pods of its sessions, its background worker's process. */
async function leftOf(taskQueue: string, sessionIds: string[]) {
  const client = await clientOf(taskQueue);
  const openWorkflows: string[] = [];
  for await (const w of client.temporal.workflow.list({
    query: `TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'`,
  }))
    openWorkflows.push(`${w.type} ${w.workflowId}`);
  const pods = await kube.core.listNamespacedPod({
    namespace: SANDBOX_NAMESPACE,
    labelSelector: `${LABELS.managedBy}=${MANAGED_BY}`,
  });
  const sessionPods = pods.items
    .filter((p) => sessionIds.includes(p.metadata?.annotations?.['durable-sandbox.dev/session-id'] ?? ''))
    .map((p) => p.metadata!.name!);
  const background = await askBackground({ ...temporal, taskQueue });
  const processes = backgroundNotes()
    .filter((n) => n.taskQueue === taskQueue && alive(n.pid))
    .map((n) => n.pid);
  return { openWorkflows, sessionPods, backgroundWorker: background?.pid ?? null, processes };
}

const NOTHING = { openWorkflows: [], sessionPods: [], backgroundWorker: null, processes: [] };

/** The README's session quick start: the lines of its CLI block from `S=$(… session open)` to `session close`. */
function readmeSessionQuickStart(): string[] {
  const readme = readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const lines = readme.split('\n');
  const from = lines.findIndex((l) => l.startsWith('S=$(npx durable-sandbox session open)'));
  const to = lines.findIndex((l, i) => i > from && l.includes('durable-sandbox session close "$S"'));
  expect(from).toBeGreaterThan(0);
  expect(to).toBeGreaterThan(from);
  return lines.slice(from, to + 1);
}

test("the README's session quick start, verbatim in a terminal with no worker: 42 and π, then nothing is left", async () => {
  const taskQueue = uniqueId('test-readme');
  const script = readmeSessionQuickStart();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ds-readme-'));
  const file = path.join(dir, 'quick-start.sh');
  writeFileSync(file, `${script.join('\n')}\necho "EXIT=$?"\necho "SESSION=$S"\n`);
  const child = spawn('script', ['-qfec', `bash ${file}`, '/dev/null'], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, TERM: 'xterm', DS_TASK_QUEUE: taskQueue, DS_BACKGROUND_IDLE_SECONDS: IDLE_SECONDS },
  });
  let screen = '';
  child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
  child.stderr.on('data', (d: Buffer) => (screen += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  rmSync(dir, { recursive: true, force: true });
  // Whatever happened, the queue's sessions end with the test.
  const opened = /SESSION=(session-[0-9a-f-]+)/.exec(screen)?.[1];
  if (opened)
    await (
      await clientOf(taskQueue)
    )
      .getSession(opened)
      .close()
      .catch(() => undefined);
  expect(code).toBe(0);
  expect(screen).toMatch(/42 3\.14159/);
  expect(screen).toContain('EXIT=0');
  expect(screen).toContain('starting one in the background');
  expect(screen).toMatch(/: closed \(closed\) after 2 run\(s\)/);
  const sessionId = /SESSION=(session-[0-9a-f-]+)/.exec(screen)?.[1];
  expect(sessionId).toBeDefined();
  // Closed, and after the idle stop, nothing at all.
  const left = await eventually(
    () => leftOf(taskQueue, [sessionId!]),
    (l) => JSON.stringify(l) === JSON.stringify(NOTHING),
    60_000,
  );
  expect(left).toEqual(NOTHING);
});

function text(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

async function mcpServer(taskQueue: string): Promise<{ mcp: McpClient; stderr: () => string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  Object.assign(env, { DS_TASK_QUEUE: taskQueue, DS_BACKGROUND_IDLE_SECONDS: IDLE_SECONDS });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'mcp'],
    cwd: PROJECT_ROOT,
    env,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const mcp = new McpClient({ name: 'newcomer-test', version: '1.0.0' });
  await mcp.connect(transport);
  return { mcp, stderr: () => stderr };
}

async function runCode(mcp: McpClient, code: string): Promise<CallToolResult> {
  return (await mcp.callTool({ name: 'run_code', arguments: { code } }, undefined, {
    timeout: 180_000,
  })) as CallToolResult;
}

test('two MCP servers started at once, no other worker (one just went away): both served, each its own state, nothing left', async () => {
  const taskQueue = uniqueId('test-two-mcp');
  // A worker of this queue that has just stopped: Temporal lists its poller for a minute more.
  const gone = await startWorker({ DS_TASK_QUEUE: taskQueue });
  const client = await clientOf(taskQueue);
  // Its first poll has reached the server (a worker started and stopped at once on a busy node may never have polled).
  for (let i = 0; i < 100 && (await client.pollers()) === 0; i++) await new Promise((r) => setTimeout(r, 100));
  await gone.stop();
  expect(await client.pollers()).toBeGreaterThan(0);

  const [a, b] = await Promise.all([mcpServer(taskQueue), mcpServer(taskQueue)]);
  const sessionIds: string[] = [];
  try {
    const [ra, rb] = await Promise.all([runCode(a.mcp, 'x = "from a"'), runCode(b.mcp, 'x = "from b"')]);
    for (const r of [ra, rb]) {
      expect(text(r)).not.toContain('NoWorker');
      expect(r.isError).toBeFalsy();
    }
    const [sa, sb] = await Promise.all([runCode(a.mcp, 'print(x)'), runCode(b.mcp, 'print(x)')]);
    expect(text(sa)).toContain('from a');
    expect(text(sb)).toContain('from b');
    for (const r of [ra, rb]) sessionIds.push(/session: (\S+), run 1/.exec(text(r))?.[1] ?? '');
    expect(sessionIds.every((id) => id.startsWith('session-'))).toBe(true);
    expect(sessionIds[0]).not.toBe(sessionIds[1]);
    // One background worker serves both.
    const started = [a.stderr(), b.stderr()].filter((s) => s.includes('starting one in the background')).length;
    expect(started).toBeGreaterThanOrEqual(1);
    expect(backgroundNotes().filter((n) => n.taskQueue === taskQueue && alive(n.pid))).toHaveLength(1);
  } finally {
    await Promise.all([a.mcp.close(), b.mcp.close()]);
  }
  // The servers are gone; their sessions' closes are carried out, then the background worker stops by itself.
  const left = await eventually(
    () => leftOf(taskQueue, sessionIds),
    (l) => JSON.stringify(l) === JSON.stringify(NOTHING),
    90_000,
  );
  expect(left).toEqual(NOTHING);
});

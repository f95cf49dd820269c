/**
 * Every way out of a command that runs its own worker leaves nothing behind: the CLI in a real pseudo-terminal
 * (util-linux `script`) cancelled with Ctrl-C, directly and through `npx`; `--wait` running out; many runs on
 * throwaway task queues; and the MCP server started with no worker polling. Each command here serves a task queue
 * of its own, so that the worker is the command's.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import { Client as McpClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { SandboxClient } from '../../client';
import { EXIT } from '../../cli/exit-codes';
import { LABELS, MANAGED_BY } from '../../core/names';
import { PROJECT_ROOT } from '../../cli/local-stack';
import { loadConfig } from '../../worker/config';
import { askBackground } from '../../cli/background-worker';
import {
  adminKube,
  eventually,
  leftovers,
  NOTHING_LEFT,
  SANDBOX_NAMESPACE,
  sessionPods,
  uniqueId,
} from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();
const BIN = path.join(PROJECT_ROOT, 'bin', 'durable-sandbox.js');
/** Prints a tick every half second for a minute: long enough to be interrupted. */
const TICKS = 'import time\nfor i in range(120):\n    print("tick", i, flush=True)\n    time.sleep(0.5)\n';

let client: SandboxClient;
beforeAll(async () => {
  const { temporal, policy } = loadConfig(process.env);
  client = await SandboxClient.connect({ temporal, policy });
});
afterAll(async () => client?.close());

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** A command in a pseudo-terminal: what it shows, keys typed into it, and its exit code. */
class Terminal {
  private readonly child: ChildProcessWithoutNullStreams;
  private screen = '';
  readonly exited: Promise<number | null>;

  constructor(command: string, env: Record<string, string>) {
    this.child = spawn('script', ['-qfec', command, '/dev/null'], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, TERM: 'xterm', ...env },
    });
    this.child.stdout.on('data', (d: Buffer) => (this.screen += d.toString()));
    this.child.stderr.on('data', (d: Buffer) => (this.screen += d.toString()));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  get output(): string {
    return this.screen;
  }

  /** Types Ctrl-C: the terminal sends SIGINT to its foreground process group, as a user's keyboard does. */
  ctrlC(): void {
    this.child.stdin.write('\x03');
  }

  async waitFor(text: string, timeoutMs = 120_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.screen.includes(text)) {
      if (Date.now() > until) throw new Error(`"${text}" did not appear; the terminal shows:\n${this.screen}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  close(): void {
    this.child.stdin.end();
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** Everything a command's worker could have left for its task queue: workflows still open, pool pods. */
async function leftForQueue(taskQueue: string): Promise<{ openWorkflows: string[]; poolPods: string[] }> {
  const openWorkflows: string[] = [];
  for await (const w of client.temporal.workflow.list({
    query: `TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'`,
  }))
    openWorkflows.push(`${w.type} ${w.workflowId}`);
  const pods = await kube.core.listNamespacedPod({
    namespace: SANDBOX_NAMESPACE,
    labelSelector: `${LABELS.managedBy}=${MANAGED_BY},${LABELS.pool}`,
  });
  const poolPods = pods.items
    .filter((p) => (p.metadata?.annotations?.['durable-sandbox.dev/pool-owner'] ?? '').includes(taskQueue))
    .map((p) => p.metadata!.name!);
  return { openWorkflows, poolPods };
}

async function expectCancelledAndGone(executionId: string, taskQueue: string): Promise<void> {
  const state = await client.getExecution(executionId);
  expect(state).toMatchObject({ state: 'completed', result: { status: 'cancelled' } });
  expect(await leftovers(kube, executionId)).toEqual(NOTHING_LEFT);
  expect(await leftForQueue(taskQueue)).toEqual({ openWorkflows: [], poolPods: [] });
}

test.each([
  ['directly', (args: string) => `${shellQuote(process.execPath)} ${shellQuote(BIN)} ${args}`],
  ['through npx', (args: string) => `npx --no-install durable-sandbox ${args}`],
])(
  'Ctrl-C in a terminal (%s) cancels the execution, waits for its cleanup, exits 130, and the shell goes on',
  async (_how, command) => {
    const taskQueue = uniqueId('test-ctrlc');
    const id = uniqueId('ctrlc');
    const term = new Terminal(`${command(`run --id ${id} -e ${shellQuote(TICKS)}`)}; echo "EXIT=$?"`, {
      DS_TASK_QUEUE: taskQueue,
    });
    try {
      await term.waitFor('tick 2');
      term.ctrlC();
      expect(await term.exited).toBe(0); // the shell's: it went on to `echo` after the CLI exited
      expect(term.output).toContain(`EXIT=${EXIT.cancelled}`);
      expect(term.output).toContain(`cancelling ${id}`);
      expect(term.output).not.toContain('tick 20');
      await expectCancelledAndGone(id, taskQueue);
    } finally {
      term.close();
    }
  },
);

test('Ctrl-C twice: the command still waits for the cleanup (its worker runs the execution), then exits 130', async () => {
  const taskQueue = uniqueId('test-ctrlc2');
  const id = uniqueId('ctrlc2');
  const term = new Terminal(
    `${shellQuote(process.execPath)} ${shellQuote(BIN)} run --id ${id} -e ${shellQuote(TICKS)}`,
    {
      DS_TASK_QUEUE: taskQueue,
    },
  );
  try {
    await term.waitFor('tick 2');
    term.ctrlC();
    await term.waitFor(`cancelling ${id}`);
    term.ctrlC();
    expect(await term.exited).toBe(EXIT.cancelled);
    expect(term.output).toContain(`still cancelling ${id}`);
    await expectCancelledAndGone(id, taskQueue);
  } finally {
    term.close();
  }
});

function cli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

test("--wait running out with the command's own worker: the execution is cancelled and cleaned up, and it says so", async () => {
  const taskQueue = uniqueId('test-wait');
  const id = uniqueId('wait');
  const r = await cli(['run', '--id', id, '--wait', '4', '-e', TICKS], { DS_TASK_QUEUE: taskQueue });
  expect(r.code).toBe(EXIT.cancelled);
  expect(r.stderr).toContain("--wait: 4 s passed, and this command's own worker is the one running it");
  await expectCancelledAndGone(id, taskQueue);
});

test('ten runs on ten throwaway task queues leave no pool, no Schedule and no open workflow', async () => {
  const queues = Array.from({ length: 10 }, () => uniqueId('test-throwaway'));
  // Two at a time: a newcomer's shell, a little busy.
  for (let i = 0; i < queues.length; i += 2) {
    const runs = await Promise.all(
      queues.slice(i, i + 2).map((q) => cli(['run', '-e', 'print(1)'], { DS_TASK_QUEUE: q })),
    );
    for (const r of runs) expect(r).toMatchObject({ code: 0 });
  }
  for (const q of queues) {
    expect(await leftForQueue(q)).toEqual({ openWorkflows: [], poolPods: [] });
    const schedule = await client.temporal.schedule
      .getHandle(`durable-sandbox-reconciler-${q}`)
      .describe()
      .then(
        () => 'exists',
        () => 'none',
      );
    expect(schedule).toBe('none');
  }
});

function text(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

async function mcpServer(
  taskQueue: string,
  args: string[] = [],
  extraEnv: Record<string, string> = {},
): Promise<{ mcp: McpClient; stderr: () => string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  Object.assign(env, extraEnv, { DS_TASK_QUEUE: taskQueue });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'mcp', ...args],
    cwd: PROJECT_ROOT,
    env,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const mcp = new McpClient({ name: 'cli-exit-test', version: '1.0.0' });
  await mcp.connect(transport);
  return { mcp, stderr: () => stderr };
}

test('mcp with no worker polling starts the background worker: calls are answered (JavaScript and Python, each in its session), and closing leaves nothing', async () => {
  const taskQueue = uniqueId('test-mcp-own');
  const { mcp, stderr } = await mcpServer(taskQueue, [], { DS_BACKGROUND_IDLE_SECONDS: '5' });
  const sessionIds: string[] = [];
  try {
    for (const args of [
      { code: 'const x = 6 * 7\nconsole.log(x)', language: 'javascript' },
      { code: 'x = 6 * 7\nx' },
    ]) {
      const r = (await mcp.callTool({ name: 'run_code', arguments: args }, undefined, {
        timeout: 120_000,
      })) as CallToolResult;
      expect(r.isError).toBeFalsy();
      expect(text(r)).toContain('42');
      const sessionId = /session: (\S+), run 1/.exec(text(r))?.[1];
      expect(sessionId).toBeDefined();
      sessionIds.push(sessionId!);
    }
    expect(sessionIds[0]).not.toBe(sessionIds[1]);
    expect(stderr()).toContain(`no worker that stays serves task queue ${taskQueue}: starting one in the background`);
  } finally {
    await mcp.close();
  }
  // The server handed its sessions the close; the background worker carries it out, then stops by itself.
  await eventually(
    async () => ({
      pods: (await Promise.all(sessionIds.map((id) => sessionPods(kube, id)))).flat(),
      ...(await leftForQueue(taskQueue)),
    }),
    (l) => l.pods.length === 0 && l.openWorkflows.length === 0 && l.poolPods.length === 0,
    60_000,
  );
  await eventually(
    () => askBackground({ ...loadConfig(process.env).temporal, taskQueue }),
    (status) => status === undefined,
    60_000,
  );
});

test('mcp --worker no with no worker polling: each call is answered within seconds, naming the fix', async () => {
  const taskQueue = uniqueId('test-mcp-none');
  const { mcp } = await mcpServer(taskQueue, ['--worker', 'no']);
  try {
    const started = Date.now();
    const r = (await mcp.callTool({ name: 'run_code', arguments: { code: 'print(1)' } }, undefined, {
      timeout: 60_000,
    })) as CallToolResult;
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(r.isError).toBe(true);
    expect(text(r)).toContain('NoWorker');
    expect(text(r)).toContain(`no worker polls task queue ${taskQueue}`);
    expect(text(r)).toContain('npm run worker');
  } finally {
    await mcp.close();
  }
  expect(await leftForQueue(taskQueue)).toEqual({ openWorkflows: [], poolPods: [] });
});

/**
 * The MCP server (integrations/mcp) on the real stack, through the SDK's own Client over both transports: stdio (a
 * child process running test/fixtures/mcp/stdio-server.ts against this file's worker) and Streamable HTTP. run_code
 * runs programs, reports progress, marks failures and bad input as errors, and a client's cancellation cancels the
 * execution with nothing left behind. The HTTP server refuses foreign Host and Origin headers and ends sessions.
 */
import http from 'node:http';
import path from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ErrorCode, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { ExecutionResult } from '../../client';
import {
  createMcpServer,
  EXECUTION_ID_IN_PROGRESS,
  RESET_SESSION_TOOL,
  RUN_CODE_TOOL,
  serveHttp,
  type HttpServer,
  type SandboxClientLike,
} from '../../integrations/mcp';
import {
  adminKube,
  eventually,
  leftoversAfterCompletion,
  NOTHING_LEFT,
  sessionPods,
  startWorker,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(300_000);
const kube = adminKube();
const ROOT = path.resolve(__dirname, '../..');
let w: TestWorker;

beforeAll(async () => {
  w = await startWorker();
});
afterAll(async () => {
  // The servers first: closing them hands their sessions the close, which the worker then carries out.
  await httpServer?.close();
  await oneShotHttpServer?.close();
  const query = `TaskQueue = "${w.config.temporal.taskQueue}" AND WorkflowType = "session" AND ExecutionStatus = "Running"`;
  await eventually(
    async () => {
      const open: string[] = [];
      for await (const wf of w.client.temporal.workflow.list({ query })) open.push(wf.workflowId);
      return open;
    },
    (open) => open.length === 0,
    60_000,
  ).catch(() => undefined); // the global teardown names any left
  await w?.stop();
});

interface Connected {
  client: Client;
  /** What the client reported through onerror. */
  errors: Error[];
  close(): Promise<void>;
  /** Ends the MCP session as a well-behaved client does (HTTP: DELETE, then close; stdio: close). */
  end(): Promise<void>;
  /** The server side's log (stderr of the stdio child, the HTTP server's log lines). */
  serverLog(): string;
}

function newClient(): { client: Client; errors: Error[] } {
  const client = new Client({ name: 'mcp-test', version: '0' });
  const errors: Error[] = [];
  client.onerror = (e) => errors.push(e);
  return { client, errors };
}

async function connectStdio(oneShot = false): Promise<Connected> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (k.startsWith('DS_') && v !== undefined) env[k] = v;
  Object.assign(env, {
    TEMPORAL_ADDRESS: w.config.temporal.address,
    TEMPORAL_NAMESPACE: w.config.temporal.namespace,
    DS_TASK_QUEUE: w.config.temporal.taskQueue,
  });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [
      '-r',
      'ts-node/register/transpile-only',
      path.join(ROOT, 'test/fixtures/mcp/stdio-server.ts'),
      ...(oneShot ? ['--one-shot'] : []),
    ],
    cwd: ROOT,
    env,
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const { client, errors } = newClient();
  await client.connect(transport);
  const close = () => client.close();
  return { client, errors, close, end: close, serverLog: () => stderr };
}

let httpServer: HttpServer | undefined;
/** A server whose calls are all one-shot executions (sessions: false). */
let oneShotHttpServer: HttpServer | undefined;
const httpLog: string[] = [];

async function connectHttp(oneShot = false): Promise<Connected> {
  const server = oneShot
    ? (oneShotHttpServer ??= await serveHttp({
        client: w.client,
        port: 0,
        sessions: false,
        log: (m) => httpLog.push(m),
      }))
    : (httpServer ??= await serveHttp({ client: w.client, port: 0, log: (m) => httpLog.push(m) }));
  const { client, errors } = newClient();
  const transport = new StreamableHTTPClientTransport(new URL(server.url));
  await client.connect(transport);
  return {
    client,
    errors,
    close: () => client.close(),
    end: async () => {
      await transport.terminateSession();
      await client.close();
    },
    serverLog: () => httpLog.join('\n'),
  };
}

const textOf = (r: CallToolResult): string =>
  r.content
    .filter((c): c is { type: 'text'; text: string } => c.type === 'text')
    .map((c) => c.text)
    .join('\n');

interface Call {
  result: CallToolResult;
  progress: { progress: number; message?: string }[];
}

async function runCode(c: Connected, args: Record<string, unknown>): Promise<Call> {
  const progress: Call['progress'] = [];
  const result = (await c.client.callTool({ name: RUN_CODE_TOOL, arguments: args }, undefined, {
    onprogress: (p) => progress.push(p),
    timeout: 180_000,
    resetTimeoutOnProgress: true,
  })) as CallToolResult;
  return { result, progress };
}

/** A long program, run as a one-shot execution (on a server with sessions off). */
const LONG_PROGRAM = 'console.log("started");\nsetTimeout(() => undefined, 300_000);';

/** Starts a long run_code call and waits until its program runs; returns its execution id and the pending call. */
async function startLongCall(c: Connected, signal?: AbortSignal): Promise<{ id: string; call: Promise<unknown> }> {
  let executionId: string | undefined;
  const call = c.client.callTool(
    { name: RUN_CODE_TOOL, arguments: { code: LONG_PROGRAM, language: 'javascript', timeoutSeconds: 600 } },
    undefined,
    {
      ...(signal ? { signal } : {}),
      timeout: 240_000,
      resetTimeoutOnProgress: true,
      onprogress: (p) => (executionId ??= EXECUTION_ID_IN_PROGRESS.exec(p.message ?? '')?.[1]),
    },
  );
  call.catch(() => undefined);
  const id = (await eventually(
    async () => executionId,
    (v) => v !== undefined,
    60_000,
  ))!;
  // Running: its first line is out.
  await eventually(
    () => w.client.getExecution(id).catch(() => undefined),
    (s) => s?.state === 'running' && (s.output?.stdout.text.includes('started') ?? false),
    120_000,
  );
  return { id, call };
}

/** The execution ended cancelled, with what it printed, and left nothing in the cluster. */
async function expectCancelled(id: string): Promise<void> {
  const r: ExecutionResult = await w.client.handle(id).result();
  expect(r.status).toBe('cancelled');
  expect(r.exitCode).toBeNull();
  expect(r.stdout).toContain('started');
  expect(await w.client.getExecution(id)).toMatchObject({ state: 'completed', result: { status: 'cancelled' } });
  expect(await leftoversAfterCompletion(kube, w.client, id)).toEqual(NOTHING_LEFT);
}

describe.each([
  ['stdio', connectStdio],
  ['Streamable HTTP', connectHttp],
] as const)('over %s', (name, connect) => {
  let c: Connected;
  /** A connection to a server with sessions off: every call a one-shot execution. */
  let one: Connected;
  beforeAll(async () => {
    c = await connect();
    one = await connect(true);
  });
  afterAll(async () => {
    await c?.end();
    await one?.end();
  });

  test('lists run_code with its input schema', async () => {
    const { tools } = await c.client.listTools();
    expect(tools.map((t) => t.name)).toEqual([RUN_CODE_TOOL, RESET_SESSION_TOOL]);
    expect(tools[0].description).toContain('share one interpreter');
    const schema = tools[0].inputSchema as {
      properties: Record<string, { enum?: string[]; default?: unknown }>;
      required?: string[];
    };
    expect(Object.keys(schema.properties).sort()).toEqual(['code', 'files', 'language', 'timeoutSeconds']);
    expect(schema.properties.language).toMatchObject({
      enum: ['python', 'bash', 'javascript', 'typescript'],
      default: 'python',
    });
    expect(schema.required).toEqual(['code']);
  });

  test('a one-shot run (a server with sessions off): 42, succeeded, with progress naming the execution', async () => {
    const { result, progress } = await runCode(one, { code: 'console.log(6 * 7)', language: 'javascript' });
    const text = textOf(result);
    expect(result.isError).toBeFalsy();
    expect(text).toMatch(/^status: succeeded/);
    expect(text).toContain('exit code: 0');
    expect(text).toMatch(/--- stdout ---\n42(\n|$)/);
    expect(text).toMatch(/sandbox: (warm|cold)/);
    const executionId = /execution id: (\S+)/.exec(text)![1];
    // At least one notification (the last one may be lost to an SDK race, typescript-sdk#2580).
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress[0].message).toMatch(/^queued/);
    expect(EXECUTION_ID_IN_PROGRESS.exec(progress[0].message ?? '')?.[1]).toBe(executionId);
    expect(progress.map((p) => p.progress)).toEqual([...progress.map((p) => p.progress)].sort((a, b) => a - b));
    expect((await w.client.handle(executionId).result()).status).toBe('succeeded');
  });

  test('bash, with an input file', async () => {
    const { result } = await runCode(c, {
      code: 'tr a-z A-Z < /sandbox/files/in.txt',
      language: 'bash',
      files: [{ name: 'in.txt', content: Buffer.from('hello\n').toString('base64'), encoding: 'base64' }],
    });
    expect(result.isError).toBeFalsy();
    expect(textOf(result)).toMatch(/--- stdout ---\nHELLO/);
  });

  test('javascript: console.log(6*7) is 42', async () => {
    const { result } = await runCode(c, { code: 'console.log(6 * 7)', language: 'javascript' });
    expect(result.isError).toBeFalsy();
    expect(textOf(result)).toMatch(/--- stdout ---\n42(\n|$)/);
  });

  test('a failing program: isError, with its stderr and exit code', async () => {
    const { result } = await runCode(c, {
      code: 'import sys\nprint("partial")\nprint("oops: bad thing", file=sys.stderr)\nsys.exit(3)',
    });
    const text = textOf(result);
    expect(result.isError).toBe(true);
    expect(text).toMatch(/^status: failed/);
    expect(text).toContain('exit code: 3');
    expect(text).toMatch(/--- stderr ---\noops: bad thing/);
    expect(text).toMatch(/--- stdout ---\npartial/);
  });

  test('bad input: isError naming the field (and the limit), nothing run', async () => {
    const tooLong = await runCode(one, { code: 'console.log(1)', language: 'javascript', timeoutSeconds: 999_999 });
    expect(tooLong.result.isError).toBe(true);
    expect(textOf(tooLong.result)).toMatch(/^Invalid input: timeoutSeconds: .*\(limit: max \d+\)/);
    expect(tooLong.progress).toEqual([]);

    const badFile = await runCode(c, { code: 'print(1)', files: [{ name: '../etc/passwd', content: 'x' }] });
    // In the session too: refused, nothing run.
    const tooLongInSession = await runCode(c, { code: 'print(1)', timeoutSeconds: 999_999 });
    expect(tooLongInSession.result.isError).toBe(true);
    expect(textOf(tooLongInSession.result)).toMatch(/^Invalid input: timeoutSeconds: .*\(limit: max \d+\)/);
    expect(badFile.result.isError).toBe(true);
    expect(textOf(badFile.result)).toContain('files[0].name');

    // Refused by the tool's schema (the SDK's validation) before the handler.
    const badLanguage = await runCode(c, { code: 'print(1)', language: 'ruby' });
    expect(badLanguage.result.isError).toBe(true);
    expect(textOf(badLanguage.result)).toMatch(/language/);
  });

  test("the client's cancellation cancels the execution; nothing is left running", async () => {
    const ac = new AbortController();
    const { id, call } = await startLongCall(one, ac.signal);
    ac.abort();
    await expect(call).rejects.toMatchObject({ code: ErrorCode.RequestTimeout });
    await expectCancelled(id);
    expect(one.serverLog()).toContain(`execution ${id}: cancelled`);
    // The connection still serves calls.
    expect((await one.client.listTools()).tools).toHaveLength(1);
  });

  test('a client that goes away mid-call (closes the connection) gets its execution cancelled', async () => {
    const other = await connect(true);
    const { id, call } = await startLongCall(other);
    await other.close();
    await expect(call).rejects.toThrow();
    await expectCancelled(id);
    expect(other.serverLog()).toContain(`execution ${id}: cancelled`);
    // stdio: stdin ended; HTTP: the call's response stream was dropped before it answered.
    if (name === 'Streamable HTTP') expect(other.serverLog()).toMatch(/call \d+ dropped by the client/);
  });

  test("Python calls share the connection's interpreter; another connection has its own; reset_session starts afresh", async () => {
    const first = await runCode(c, { code: 'import math\nx = 6 * 7\nopen("notes.txt", "w").write("kept")\nx' });
    expect(first.result.isError).toBeFalsy();
    const sessionId = /session: (\S+), run \d+/.exec(textOf(first.result))![1];
    expect(textOf(first.result)).toMatch(/--- stdout ---\n42(\n|$)/);
    const second = await runCode(c, { code: 'print(x, math.pi > 3, open("notes.txt").read())' });
    expect(textOf(second.result)).toMatch(/--- stdout ---\n42 True kept(\n|$)/);
    expect(textOf(second.result)).toContain(`session: ${sessionId}`);

    const other = await connect();
    try {
      const elsewhere = await runCode(other, { code: 'print(x)' });
      expect(elsewhere.result.isError).toBe(true);
      expect(textOf(elsewhere.result)).toMatch(/NameError: name 'x' is not defined/);
      expect(textOf(elsewhere.result)).not.toContain(sessionId);
    } finally {
      await other.end();
    }

    const reset = (await c.client.callTool({ name: RESET_SESSION_TOOL, arguments: {} })) as CallToolResult;
    expect(textOf(reset)).toContain(`Session ${sessionId} closed`);
    await eventually(
      () => sessionPods(kube, sessionId),
      (pods) => pods.length === 0,
      60_000,
    );
    const afresh = await runCode(c, { code: 'print("x" in dir())' });
    expect(textOf(afresh.result)).toMatch(/--- stdout ---\nFalse(\n|$)/);
    expect(textOf(afresh.result)).not.toContain(sessionId);
  });

  test("bash calls share the connection's shell (its own session, not Python's); reset_session ends both", async () => {
    const py = await runCode(c, { code: 'y = 1' });
    const pySession = /session: (\S+), run \d+/.exec(textOf(py.result))![1];
    const first = await runCode(c, { language: 'bash', code: 'mkdir -p work && cd work\nexport ANSWER=42' });
    expect(first.result.isError).toBeFalsy();
    const bashSession = /session: (\S+), run \d+/.exec(textOf(first.result))![1];
    expect(bashSession).not.toBe(pySession);
    const second = await runCode(c, { language: 'bash', code: 'echo "$ANSWER $(basename "$PWD")"' });
    expect(textOf(second.result)).toMatch(/--- stdout ---\n42 work(\n|$)/);
    expect(textOf(second.result)).toContain(`session: ${bashSession}`);
    const reset = (await c.client.callTool({ name: RESET_SESSION_TOOL, arguments: {} })) as CallToolResult;
    expect(textOf(reset)).toContain(bashSession);
    expect(textOf(reset)).toContain(pySession);
  });

  test('cancelling a Python call stops it by ending the session (its pod goes); the next call says so', async () => {
    const ac = new AbortController();
    let sessionId: string | undefined;
    const call = c.client.callTool(
      { name: RUN_CODE_TOOL, arguments: { code: 'import time\nprint("started", flush=True)\ntime.sleep(300)' } },
      undefined,
      {
        signal: ac.signal,
        timeout: 240_000,
        onprogress: (p) => (sessionId ??= /running in session (\S+)/.exec(p.message ?? '')?.[1]),
      },
    );
    call.catch(() => undefined);
    const id = (await eventually(
      async () => sessionId,
      (v) => v !== undefined,
      60_000,
    ))!;
    await eventually(
      () => sessionPods(kube, id),
      (pods) => pods.some((p) => p.status?.phase === 'Running'),
      60_000,
    );
    await new Promise((r) => setTimeout(r, 1000));
    ac.abort();
    await expect(call).rejects.toMatchObject({ code: ErrorCode.RequestTimeout });
    const ended = await eventually(
      () => w.client.getSession(id).state(),
      (s) => s.state === 'closed',
      60_000,
    );
    expect(ended.closedBecause).toBe('cancelled');
    expect(await sessionPods(kube, id)).toEqual([]);
    const next = await runCode(c, { code: 'print(1)' });
    expect(textOf(next.result)).toContain(`the previous session (${id}) was closed when a call was cancelled`);
  });

  test("a connection's end closes its session: nothing is left", async () => {
    const other = await connect();
    const r = await runCode(other, { code: 'y = 1' });
    const sessionId = /session: (\S+), run \d+/.exec(textOf(r.result))![1];
    expect(await sessionPods(kube, sessionId)).toHaveLength(1);
    await other.end();
    await eventually(
      () => sessionPods(kube, sessionId),
      (pods) => pods.length === 0,
      60_000,
    );
    await eventually(
      () => w.client.getSession(sessionId).state(),
      (s) => s.state === 'closed',
      60_000,
    );
  });

  test('nothing but MCP messages on the wire', () => {
    expect(c.errors.filter((e) => !/unknown token|SSE stream disconnected/.test(e.message))).toEqual([]);
  });
});

test('a PNG the program writes under /sandbox/out comes back as image content', async () => {
  const c = await connectHttp();
  try {
    const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=';
    const { result } = await runCode(c, {
      code: `import base64, os\nos.makedirs("/sandbox/out", exist_ok=True)\nopen("/sandbox/out/dot.png", "wb").write(base64.b64decode("${png}"))\nprint("wrote")`,
    });
    expect(result.isError).toBeFalsy();
    expect(textOf(result)).toMatch(/- dot\.png \(image\/png, \d+ bytes\): attached as an image/);
    expect(result.content).toContainEqual({ type: 'image', data: png, mimeType: 'image/png' });
  } finally {
    await c.close();
  }
});

function rawRequest(
  url: string,
  method: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
      },
      (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
};

describe('the Streamable HTTP server', () => {
  let server: HttpServer;
  beforeAll(async () => {
    server = await serveHttp({ client: w.client, port: 0, idleTimeoutMs: 1000, log: () => undefined });
  });
  afterAll(async () => server?.close());

  test('binds 127.0.0.1 by default', () => {
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/mcp`);
  });

  test('a foreign Host header gets 403 before any session is made; local names pass on any port', async () => {
    for (const host of ['evil.example', `evil.example:${server.port}`, `127.0.0.1.evil.example:${server.port}`]) {
      const r = await rawRequest(server.url, 'POST', { host }, INITIALIZE);
      expect({ host, status: r.status }).toEqual({ host, status: 403 });
      expect(JSON.parse(r.body)).toMatchObject({
        jsonrpc: '2.0',
        error: { code: -32000, message: expect.stringContaining('Invalid Host') },
      });
    }
    expect(server.sessionCount()).toBe(0);
    for (const host of [`localhost:${server.port}`, 'localhost', `127.0.0.1:${server.port}`, '[::1]:1']) {
      const r = await rawRequest(server.url, 'POST', { host }, INITIALIZE);
      expect({ host, status: r.status }).toEqual({ host, status: 200 });
    }
  });

  test('an Origin naming another host gets 403', async () => {
    const r = await rawRequest(server.url, 'POST', { origin: 'http://evil.example' }, INITIALIZE);
    expect(r.status).toBe(403);
    const ok = await rawRequest(server.url, 'POST', { origin: `http://localhost:${server.port}` }, INITIALIZE);
    expect(ok.status).toBe(200);
  });

  test('sessions end on DELETE, and after the idle timeout once the client is gone', async () => {
    // The raw initializes above left sessions with no client: the idle timeout ends them.
    await eventually(
      async () => server.sessionCount(),
      (n) => n === 0,
      10_000,
    );

    const a = newClient();
    const ta = new StreamableHTTPClientTransport(new URL(server.url));
    await a.client.connect(ta);
    expect(server.sessionCount()).toBe(1);
    await ta.terminateSession();
    expect(server.sessionCount()).toBe(0);
    await a.client.close();

    const b = newClient();
    const tb = new StreamableHTTPClientTransport(new URL(server.url));
    await b.client.connect(tb);
    const sessionId = tb.sessionId!;
    await b.client.listTools();
    // Still there while the client is connected (its event stream is open), past the idle timeout.
    await new Promise((r) => setTimeout(r, 2500));
    expect(server.sessionCount()).toBe(1);
    await b.client.close(); // no DELETE: the client just goes away
    await eventually(
      async () => server.sessionCount(),
      (n) => n === 0,
      10_000,
    );
    const stale = await rawRequest(
      server.url,
      'POST',
      { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
      {
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/list',
      },
    );
    expect(stale.status).toBe(404);
  });
});

test('closing the HTTP server cancels the executions of calls in flight (a server with sessions off)', async () => {
  const log: string[] = [];
  const server = await serveHttp({ client: w.client, port: 0, sessions: false, log: (m) => log.push(m) });
  const { client, errors } = newClient();
  await client.connect(new StreamableHTTPClientTransport(new URL(server.url)));
  const close = () => client.close();
  const c: Connected = { client, errors, close, end: close, serverLog: () => log.join('\n') };
  const { id, call } = await startLongCall(c);
  expect(server.sessionCount()).toBe(1);
  await server.close();
  expect(server.sessionCount()).toBe(0);
  await expectCancelled(id);
  expect(log.join('\n')).toContain(`execution ${id}: cancelled`);
  await client.close();
  await expect(call).rejects.toThrow();
});

/** A stand-in client's sessions: these tests run one-shot executions only (the server is made with sessions off). */
const ONE_SHOT_ONLY: Pick<SandboxClientLike, 'openSession' | 'getSession'> = {
  openSession: () => Promise.reject(new Error('no sessions here')),
  getSession: () => {
    throw new Error('no sessions here');
  },
};

describe('run_code content (a stand-in client)', () => {
  const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=';
  const base = {
    executionId: 'fake-1',
    exitCode: 1,
    stdout: 'out\n',
    stderr: '',
    stdoutInfo: { totalBytes: 4, capturedBytes: 4, truncated: false },
    stderrInfo: { totalBytes: 0, capturedBytes: 0, truncated: false },
    attempts: 1,
    attemptErrors: [],
    language: 'python',
    sandbox: 'warm',
    kubernetes: { namespace: 'x', image: 'y' },
    timeline: [],
  };
  const files = [
    { name: 'plot.png', sizeBytes: 68, mimeType: 'image/png', encoding: 'base64', content: PNG, truncated: false },
    {
      name: 'big.png',
      sizeBytes: 9_999_999,
      mimeType: 'image/png',
      encoding: 'base64',
      content: PNG.slice(0, 8),
      truncated: true,
    },
    { name: 'data.csv', sizeBytes: 4, mimeType: 'text/csv', encoding: 'utf8', content: 'a,b\n', truncated: false },
  ];

  async function callWith(result: object): Promise<CallToolResult> {
    const fake: SandboxClientLike = {
      executeCode: async (_input, options) => {
        options?.onProgress?.({ stage: 'starting', detail: 'claiming a pod', attempt: 1, sandbox: 'warm' });
        return result as ExecutionResult;
      },
      ...ONE_SHOT_ONLY,
      cancelExecution: async () => undefined,
      getExecution: async () => {
        throw new Error('not used');
      },
    };
    const [ct, st] = InMemoryTransport.createLinkedPair();
    await createMcpServer({ client: fake, log: () => undefined, sessions: false }).connect(st);
    const { client } = newClient();
    await client.connect(ct);
    try {
      return (await client.callTool({ name: RUN_CODE_TOOL, arguments: { code: 'x' } })) as CallToolResult;
    } finally {
      await client.close();
    }
  }

  test('PNG output files as images, text files as text, truncated ones named only; isError unless succeeded', async () => {
    const r = await callWith({ ...base, status: 'succeeded', exitCode: 0, outputFiles: files });
    expect(r.isError).toBeUndefined();
    expect(r.content).toEqual([
      {
        type: 'text',
        text: expect.stringContaining('- big.png (image/png, 9999999 bytes): binary, truncated, not attached'),
      },
      { type: 'image', data: PNG, mimeType: 'image/png' },
      { type: 'text', text: '--- /sandbox/out/data.csv ---\na,b\n' },
    ]);
    const failed = await callWith({
      ...base,
      status: 'infra_error',
      exitCode: null,
      error: { reason: 'PodLost', message: 'the node went away', retryable: true },
    });
    expect(failed.isError).toBe(true);
    expect(textOf(failed)).toContain('error: PodLost: the node went away');
    expect(textOf(failed)).toContain('exit code: none');
  });

  test('a cancel that comes while the execution is still being started is retried until it lands', async () => {
    const notFound = Object.assign(new Error('workflow not found'), { name: 'WorkflowNotFoundError' });
    let cancels = 0;
    let started = false;
    const fake: SandboxClientLike = {
      ...ONE_SHOT_ONLY,
      executeCode: (_input, options) =>
        new Promise((_resolve, reject) => {
          options?.onProgress?.({ stage: 'queued', detail: 'waiting', attempt: 1 });
          options?.signal?.addEventListener('abort', () => {
            // The start lands a little after the caller stopped waiting.
            setTimeout(() => (started = true), 600);
            reject(new Error('stopped waiting'));
          });
        }),
      cancelExecution: async () => {
        cancels++;
        if (!started) throw notFound;
      },
      getExecution: async () => {
        throw notFound;
      },
    };
    const log: string[] = [];
    const [ct, st] = InMemoryTransport.createLinkedPair();
    await createMcpServer({ client: fake, log: (m) => log.push(m), sessions: false }).connect(st);
    const { client } = newClient();
    await client.connect(ct);
    const ac = new AbortController();
    const call = client.callTool({ name: RUN_CODE_TOOL, arguments: { code: 'x' } }, undefined, {
      signal: ac.signal,
      onprogress: () => ac.abort(),
    });
    await expect(call).rejects.toMatchObject({ code: ErrorCode.RequestTimeout });
    await eventually(
      async () => log.some((l) => / cancelled$/.test(l)),
      (ok) => ok,
      10_000,
    );
    expect(started).toBe(true);
    expect(cancels).toBeGreaterThan(1);
    await client.close();
  });
});

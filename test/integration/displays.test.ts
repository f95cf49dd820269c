/**
 * Display data on the real stack, what a notebook shows: through the client (one-shot and in a session), the real MCP
 * SDK client, and ADK's real Runner (only its model scripted). A figure shown with plt.show() comes back as one PNG
 * with no file written; a session's trailing DataFrame as HTML and text; display() of two objects as two displays in
 * order; _repr_mimebundle_ as its types; fifty figures capped and counted; a failing run keeps what it showed first.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import {
  BaseLlm,
  InMemoryRunner,
  LlmAgent,
  type BaseLlmConnection,
  type LlmRequest,
  type LlmResponse,
} from '@google/adk';
import type { Content } from '@google/genai';
import type { MimeBundle } from '../../client';
import { createMcpServer, RUN_CODE_TOOL } from '../../integrations/mcp';
import { DurableSandboxCodeExecutor, durableSandboxAgentOptions, SANDBOX_INSTRUCTION } from '../../integrations/adk';
import { startWorker, uniqueId, type TestWorker } from '../helpers/stack';

jest.setTimeout(240_000);
let w: TestWorker;

beforeAll(async () => {
  w = await startWorker();
});
afterAll(async () => w?.stop());

const PNG_SIGNATURE = '89504e470d0a1a0a';
const isPng = (b64: string | undefined) =>
  !!b64 && Buffer.from(b64, 'base64').subarray(0, 8).toString('hex') === PNG_SIGNATURE;

const PLOT = 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()\nprint("shown")';

test('plt.show() in a one-shot run: one PNG display, no file written, streamed to onDisplay', async () => {
  const seen: { bundle: MimeBundle; index: number }[] = [];
  const r = await w.client.executeCode(
    { code: PLOT },
    { executionId: uniqueId('display-plot'), onDisplay: (bundle, info) => seen.push({ bundle, index: info.index }) },
  );
  expect(r.status).toBe('succeeded');
  expect(r.stdout).toBe('shown\n');
  expect(r.outputFiles).toEqual([]);
  expect(r.displays).toHaveLength(1);
  expect(isPng(r.displays![0]['image/png'])).toBe(true);
  expect(Buffer.from(r.displays![0]['image/png'], 'base64').length).toBeGreaterThan(1000);
  expect(r.displays![0]['text/plain']).toMatch(/Figure/);
  expect(r.displaysInfo).toEqual({ total: 1, dropped: 0 });
  expect(seen.map((s) => s.index)).toEqual([0]);
  expect(seen[0].bundle).toEqual(r.displays![0]);
});

test('display() of two objects: two displays in order; _repr_mimebundle_ gives its types; a failing run keeps what it showed', async () => {
  const code = [
    'class Both:',
    '    def _repr_mimebundle_(self, include=None, exclude=None):',
    '        return {"text/markdown": "**bold**", "application/json": {"a": 1}, "text/plain": "Both()"}',
    'display("first", Both())',
    'raise RuntimeError("after the displays")',
  ].join('\n');
  const r = await w.client.executeCode({ code }, { executionId: uniqueId('display-two') });
  expect(r.status).toBe('failed');
  expect(r.stderr).toContain('after the displays');
  expect(r.displays).toEqual([
    { 'text/plain': "'first'" },
    { 'text/markdown': '**bold**', 'application/json': '{"a": 1}', 'text/plain': 'Both()' },
  ]);
});

test('fifty figures: capped, and the result says how many did not come back', async () => {
  const code =
    'import matplotlib.pyplot as plt\nfor i in range(50):\n    plt.figure()\n    plt.plot([0, i])\nplt.show()';
  const r = await w.client.executeCode({ code }, { executionId: uniqueId('display-fifty') });
  expect(r.status).toBe('succeeded');
  expect(r.displaysInfo?.total).toBe(50);
  expect(r.displays!.length).toBeGreaterThan(0);
  expect(r.displays!.length).toBeLessThanOrEqual(20);
  expect(r.displaysInfo?.dropped).toBe(50 - r.displays!.length);
  expect(r.displays!.every((d) => isPng(d['image/png']))).toBe(true);
});

test('a session: a trailing DataFrame shows as HTML and text (not printed); a plain value is printed; figures left open are shown', async () => {
  const s = await w.client.openSession();
  try {
    await s.run('import pandas as pd\ndf = pd.DataFrame({"x": [1, 2, 3]})');
    const table = await s.run('df');
    expect(table.stdout).toBe('');
    expect(table.displays).toHaveLength(1);
    expect(table.displays![0]['text/html']).toContain('<table');
    expect(table.displays![0]['text/plain']).toContain('x');
    const plain = await s.run('6 * 7');
    expect(plain.stdout).toBe('42\n');
    expect(plain.displays).toBeUndefined();
    const open = await s.run('import matplotlib.pyplot as plt\nplt.plot([3, 1, 2])\nlen(df)');
    expect(open.stdout).toBe('3\n');
    expect(open.displays).toHaveLength(1);
    expect(isPng(open.displays![0]['image/png'])).toBe(true);
  } finally {
    await s.close();
  }
});

test('MCP (the SDK client): a figure comes back as image content, a table as HTML text', async () => {
  const server = createMcpServer({ client: w.client, log: () => undefined });
  const client = new Client({ name: 'displays-test', version: '0' });
  const [a, b] = InMemoryTransport.createLinkedPair();
  await Promise.all([server.connect(a), client.connect(b)]);
  try {
    const r = (await client.callTool({ name: RUN_CODE_TOOL, arguments: { code: PLOT } }, undefined, {
      timeout: 180_000,
    })) as CallToolResult;
    const images = r.content.filter((c) => c.type === 'image');
    expect(images).toHaveLength(1);
    expect(images[0]).toMatchObject({ mimeType: 'image/png' });
    expect(isPng((images[0] as { data: string }).data)).toBe(true);
    const t = (await client.callTool(
      { name: RUN_CODE_TOOL, arguments: { code: 'import pandas as pd\npd.DataFrame({"y": [7]})' } },
      undefined,
      { timeout: 180_000 },
    )) as CallToolResult;
    const texts = t.content.filter((c) => c.type === 'text').map((c) => (c as { text: string }).text);
    expect(texts.some((x) => x.startsWith('--- display 1 (text/html) ---') && x.includes('<table'))).toBe(true);
  } finally {
    await client.close();
    await server.close();
  }
});

class ScriptedLlm extends BaseLlm {
  readonly requests: Content[][] = [];
  constructor(private readonly code: string) {
    super({ model: 'scripted' });
  }
  override async *generateContentAsync(req: LlmRequest): AsyncGenerator<LlmResponse, void> {
    this.requests.push(structuredClone(req.contents));
    const text = this.requests.length === 1 ? `Plotting.\n\`\`\`python\n${this.code}\n\`\`\`` : 'Here is the chart.';
    yield { content: { role: 'model', parts: [{ text }] } };
  }
  override async connect(): Promise<BaseLlmConnection> {
    throw new Error('no live connections');
  }
}

test("ADK (the real Runner): a figure reaches the model's next request as inline image data", async () => {
  const model = new ScriptedLlm(PLOT);
  const executor = new DurableSandboxCodeExecutor({ client: w.client, executionIdPrefix: uniqueId('adk-display') });
  const agent = new LlmAgent({
    name: 'plotter',
    model,
    instruction: SANDBOX_INSTRUCTION,
    ...durableSandboxAgentOptions(executor),
  });
  const runner = new InMemoryRunner({ agent, appName: 'display-test' });
  const session = await runner.sessionService.createSession({ appName: 'display-test', userId: 'u' });
  for await (const _ of runner.runAsync({
    userId: 'u',
    sessionId: session.id,
    newMessage: { role: 'user', parts: [{ text: 'Plot it.' }] },
  })) {
    // the events are the model's and the executor's
  }
  expect(model.requests.length).toBeGreaterThanOrEqual(2);
  const parts = model.requests[1].flatMap((c) => c.parts ?? []);
  const image = parts.find((p) => p.inlineData?.mimeType === 'image/png');
  expect(isPng(image?.inlineData?.data)).toBe(true);
});

/**
 * The ADK integration on the real stack: a real ADK Runner and LlmAgent, with DurableSandboxCodeExecutor on the real
 * worker (gVisor pods, Temporal). Only the model is scripted: it answers a question with a ```python block, and once
 * it sees the execution result in its request, with a final text quoting that result.
 */
import os from 'node:os';
import {
  BaseLlm,
  BasePlugin,
  CodeExecutionLanguage,
  InMemoryRunner,
  isFinalResponse,
  LlmAgent,
  LogLevel,
  setLogLevel,
  type BaseLlmConnection,
  type Event,
  type InvocationContext,
  type LlmRequest,
  type LlmResponse,
} from '@google/adk';
import type { Content } from '@google/genai';
import { SandboxClient } from '../../client';
import { loadConfig } from '../../worker/config';
import {
  DurableSandboxCodeExecutor,
  durableSandboxAgentOptions,
  SANDBOX_INSTRUCTION,
  STDERR_MARKER,
} from '../../integrations/adk';
import {
  adminKube,
  eventually,
  leftoversAfterCompletion,
  NOTHING_LEFT,
  sessionPods,
  startWorker,
  uniqueId,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(240_000);
setLogLevel(LogLevel.WARN);
const kube = adminKube();
let w: TestWorker;

beforeAll(async () => {
  w = await startWorker();
});
afterAll(async () => w?.stop());

const RESULT_FENCE = '```tool_output\n';

function textOf(content: Content | undefined): string {
  return (content?.parts ?? []).map((p) => p.text ?? '').join('');
}

/**
 * The scripted model: while the last thing in its request is not an execution result, it answers with `code` in a
 * ```python block; once it is, it answers with a final text that quotes the result.
 */
class ScriptedLlm extends BaseLlm {
  readonly requests: Content[][] = [];

  constructor(
    private readonly code: string,
    private readonly fence = 'python',
  ) {
    super({ model: 'scripted' });
  }

  override async *generateContentAsync(llmRequest: LlmRequest): AsyncGenerator<LlmResponse, void> {
    const contents = structuredClone(llmRequest.contents);
    this.requests.push(contents);
    const last = textOf(contents[contents.length - 1]);
    const text = last.startsWith(RESULT_FENCE)
      ? `Final answer. The sandbox reported:\n${last.slice(RESULT_FENCE.length, -'\n```'.length)}`
      : `Let me compute that.\n\`\`\`${this.fence}\n${this.code}\n\`\`\``;
    yield { content: { role: 'model', parts: [{ text }] } };
  }

  override async connect(): Promise<BaseLlmConnection> {
    throw new Error('no live connections');
  }
}

/** Keeps each invocation's context, to retry a call of that invocation afterwards. */
class InvocationRecorder extends BasePlugin {
  readonly contexts: InvocationContext[] = [];

  constructor() {
    super('invocation-recorder');
  }

  override async beforeRunCallback({
    invocationContext,
  }: {
    invocationContext: InvocationContext;
  }): Promise<undefined> {
    this.contexts.push(invocationContext);
    return undefined;
  }
}

interface Setup {
  prefix: string;
  model: ScriptedLlm;
  executor: DurableSandboxCodeExecutor;
  recorder: InvocationRecorder;
  ask: () => Promise<Event[]>;
}

function setup(code: string, fence?: string): Setup {
  const prefix = uniqueId('adk');
  const model = new ScriptedLlm(code, fence);
  const executor = new DurableSandboxCodeExecutor({ client: w.client, executionIdPrefix: prefix, timeoutSeconds: 60 });
  const agent = new LlmAgent({
    name: 'analyst',
    model,
    instruction: SANDBOX_INSTRUCTION,
    ...durableSandboxAgentOptions(executor),
  });
  const recorder = new InvocationRecorder();
  const runner = new InMemoryRunner({ agent, appName: 'adk-test', plugins: [recorder] });
  const session = runner.sessionService.createSession({ appName: 'adk-test', userId: 'u' });
  const ask = async () => {
    const events: Event[] = [];
    const { id } = await session;
    for await (const e of runner.runAsync({
      userId: 'u',
      sessionId: id,
      newMessage: { role: 'user', parts: [{ text: 'Compute it.' }] },
    })) {
      events.push(e);
    }
    return events;
  };
  return { prefix, model, executor, recorder, ask };
}

/** The call ADK made for `code` in an invocation, to make it again. */
const callFor = (ctx: InvocationContext, code: string) => ({
  invocationContext: ctx,
  codeExecutionInput: { code, language: CodeExecutionLanguage.PYTHON, inputFiles: [] },
});

/** The ids of the executions on this test's task queue that start with `prefix`, once there are `n` of them. */
async function executionsStartingWith(prefix: string, n: number): Promise<string[]> {
  const list = async () => {
    const ids: string[] = [];
    for await (const wf of w.client.temporal.workflow.list({ query: `TaskQueue = "${w.config.temporal.taskQueue}"` })) {
      if (wf.workflowId.startsWith(`${prefix}-`)) ids.push(wf.workflowId);
    }
    return ids.sort();
  };
  await eventually(list, (ids) => ids.length >= n);
  await new Promise((r) => setTimeout(r, 1500)); // visibility lags a little: give an extra execution time to show up
  return list();
}

/** The parts of each event, by kind: 'text', 'executableCode', 'codeExecutionResult'. */
const shape = (events: Event[]) =>
  events.map((e) =>
    (e.content?.parts ?? [])
      .map((p) => (p.executableCode ? 'executableCode' : p.codeExecutionResult ? 'codeExecutionResult' : 'text'))
      .join(','),
  );

const resultOf = (e: Event) => e.content!.parts![0].codeExecutionResult!;

test("the agent runs its model's code in the sandbox and answers with the real output; a retried call attaches", async () => {
  const code = [
    'import platform, subprocess, uuid',
    'print(6 * 7)',
    'print("kernel", platform.release())',
    'print(subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()[0])',
    'print("run", uuid.uuid4())',
  ].join('\n');
  const { prefix, model, executor, recorder, ask } = setup(code);
  const events = await ask();

  expect(shape(events)).toEqual(['text,executableCode', 'codeExecutionResult', 'text']);
  expect(events[0].content!.parts![1].executableCode!.code).toBe(code);
  const result = resultOf(events[1]);
  expect(result.outcome).toBe('OUTCOME_OK');
  const m = /^42\nkernel (\S+)\n(.*Starting gVisor.*)\nrun ([0-9a-f-]{36})\n$/.exec(result.output!);
  expect(m).not.toBeNull();
  const [, kernel, , runId] = m!;
  expect(kernel).not.toBe(os.release());
  // The model was shown the output, and the agent's final answer quotes it.
  expect(model.requests).toHaveLength(2);
  expect(textOf(model.requests[1][model.requests[1].length - 1])).toBe(`${RESULT_FENCE}${result.output}\n\`\`\``);
  const final = events[events.length - 1];
  expect(isFinalResponse(final)).toBe(true);
  expect(textOf(final.content)).toBe(`Final answer. The sandbox reported:\n${result.output}`);

  // One execution, under the id derived from the invocation and the code.
  const [ctx] = recorder.contexts;
  const executionId = executor.executionIdFor(callFor(ctx, code))!;
  expect(executionId.startsWith(`${prefix}-${ctx.invocationId}-`)).toBe(true);
  expect(await executionsStartingWith(prefix, 1)).toEqual([executionId]);
  const state = await w.client.getExecution(executionId);
  expect(state.state === 'completed' || state.state === 'cleaning_up').toBe(true);
  if (state.state === 'completed' || state.state === 'cleaning_up') expect(state.result.stdout).toBe(result.output);

  // ADK retrying that call of the same invocation attaches to it: the same run (its random id), no new execution.
  const retried = await executor.executeCode(callFor(ctx, code));
  expect(retried).toEqual({ stdout: result.output, stderr: '', outputFiles: [] });
  expect(retried.stdout).toContain(`run ${runId}\n`);
  expect(await executionsStartingWith(prefix, 1)).toEqual([executionId]);

  // A call retried while the first is still running (its answer lost) attaches too: one run, one result for both.
  const slow = 'import time, uuid\ntime.sleep(3)\nprint("slow", uuid.uuid4())';
  const first = executor.executeCode(callFor(ctx, slow));
  await eventually(
    () =>
      w.client.getExecution(executor.executionIdFor(callFor(ctx, slow))!).then(
        (s) => s.state,
        () => 'absent',
      ),
    (s) => s === 'running',
  );
  const [a, b] = await Promise.all([first, executor.executeCode(callFor(ctx, slow))]);
  expect(a.stdout).toMatch(/^slow [0-9a-f-]{36}\n$/);
  expect(b).toEqual(a);
  expect(await executionsStartingWith(prefix, 2)).toEqual(
    [executionId, executor.executionIdFor(callFor(ctx, slow))].sort(),
  );

  // The same question again is a new invocation: the code runs again.
  const again = await ask();
  const secondRun = resultOf(again[1]).output!;
  expect(secondRun).toMatch(/^42\n/);
  expect(secondRun).not.toContain(runId);
  const ids = await executionsStartingWith(prefix, 3);
  expect(ids).toHaveLength(3);
  expect(ids).toContain(executor.executionIdFor(callFor(recorder.contexts[1], code)));
  for (const id of ids) expect(await leftoversAfterCompletion(kube, w.client, id)).toEqual(NOTHING_LEFT);
});

test('a program that fails (exit 3): ADK sees a failure whose stderr says what happened, with the program stderr', async () => {
  const code =
    'import sys\nprint("partial result", flush=True)\nprint("something broke", file=sys.stderr)\nsys.exit(3)';
  const { prefix, model, executor, recorder, ask } = setup(code);
  const events = await ask();

  expect(shape(events)).toEqual(['text,executableCode', 'codeExecutionResult', 'text']);
  const result = resultOf(events[1]);
  expect(result.outcome).toBe('OUTCOME_FAILED');
  const executionId = executor.executionIdFor(callFor(recorder.contexts[0], code))!;
  expect(result.output).toBe(
    `Execution failed: the program exited with code 3. [execution ${executionId}]\nsomething broke\n\n--- stdout ---\npartial result\n`,
  );
  expect(textOf(model.requests[1][model.requests[1].length - 1])).toContain('exited with code 3');
  expect(textOf(events[events.length - 1].content)).toContain('something broke');

  // What the executor gave ADK (the retried call attaches, and gets it again).
  const r = await executor.executeCode(callFor(recorder.contexts[0], code));
  expect(r).toEqual({
    stdout: 'partial result\n',
    stderr: `Execution failed: the program exited with code 3. [execution ${executionId}]\nsomething broke\n`,
    outputFiles: [],
  });
  expect(await executionsStartingWith(prefix, 1)).toEqual([executionId]);
  expect(await leftoversAfterCompletion(kube, w.client, executionId)).toEqual(NOTHING_LEFT);
});

test('a program that warns on stderr but exits 0 is not a failure: the warning follows its stdout', async () => {
  const code = 'import warnings\nwarnings.warn("careful with that axe")\nprint("answer", 6 * 7)';
  const { prefix, executor, recorder, ask } = setup(code);
  const events = await ask();

  expect(shape(events)).toEqual(['text,executableCode', 'codeExecutionResult', 'text']);
  const result = resultOf(events[1]);
  expect(result.outcome).toBe('OUTCOME_OK');
  expect(result.output!.startsWith(`answer 42\n${STDERR_MARKER}\n`)).toBe(true);
  expect(result.output).toContain('UserWarning: careful with that axe\n');
  expect(textOf(events[events.length - 1].content)).toContain('careful with that axe');

  const r = await executor.executeCode(callFor(recorder.contexts[0], code));
  expect(r.stderr).toBe('');
  expect(r.stdout).toBe(result.output);
  const [executionId] = await executionsStartingWith(prefix, 1);
  expect(await leftoversAfterCompletion(kube, w.client, executionId)).toEqual(NOTHING_LEFT);
});

test('a ```bash block runs in bash; input files reach the program, renamed when the sandbox cannot hold their name', async () => {
  const { prefix, executor, recorder, ask } = setup('echo "bash ${BASH_VERSION%%.*}"; echo $((6 * 7))', 'bash');
  const events = await ask();
  expect(shape(events)).toEqual(['text,executableCode', 'codeExecutionResult', 'text']);
  expect(resultOf(events[1])).toEqual({ outcome: 'OUTCOME_OK', output: expect.stringMatching(/^bash \d+\n42\n$/) });

  const ctx = recorder.contexts[0];
  const csv = {
    name: 'data/my table.csv',
    content: Buffer.from('a,b\n1,2\n').toString('base64'),
    mimeType: 'text/csv',
  };
  const read = 'print(open("/sandbox/files/my_table.csv").read(), end="")';
  const r = await executor.executeCode({
    invocationContext: ctx,
    codeExecutionInput: { code: read, language: CodeExecutionLanguage.PYTHON, inputFiles: [csv] },
  });
  expect(r).toEqual({
    stdout: 'a,b\n1,2\n[input file "data/my table.csv" is /sandbox/files/my_table.csv]\n',
    stderr: '',
    outputFiles: [],
  });

  const clash = { ...csv, name: 'my_table.csv' };
  await expect(
    executor.executeCode({
      invocationContext: ctx,
      codeExecutionInput: { code: read, language: CodeExecutionLanguage.PYTHON, inputFiles: [csv, clash] },
    }),
  ).rejects.toThrow('input files "data/my table.csv" and "my_table.csv" would both be /sandbox/files/my_table.csv');
  const ps = await executor.executeCode({
    invocationContext: ctx,
    codeExecutionInput: { code: 'Write-Output 1', language: CodeExecutionLanguage.POWERSHELL, inputFiles: [] },
  });
  expect(ps).toEqual({
    stdout: '',
    stderr: 'Unsupported language "powershell": this sandbox runs python, bash, javascript, typescript.\n',
    outputFiles: [],
  });
  // ADK's TypeScript is ours: type-checked, then run in Node.js.
  const ts = await executor.executeCode({
    invocationContext: ctx,
    codeExecutionInput: {
      code: 'const n: number = 6 * 7;\nconsole.log(n);',
      language: CodeExecutionLanguage.TYPESCRIPT,
      inputFiles: [],
    },
  });
  expect(ts).toMatchObject({ stdout: '42\n', stderr: '' });

  const ids = await executionsStartingWith(prefix, 3);
  expect(ids).toHaveLength(3);
  for (const id of ids) expect(await leftoversAfterCompletion(kube, w.client, id)).toEqual(NOTHING_LEFT);
});

test('a ```javascript block runs in Node.js, under gVisor, through the real Runner', async () => {
  const code = 'console.log(6 * 7); console.log(process.release.name)';
  const { prefix, ask } = setup(code, 'javascript');
  const events = await ask();
  expect(shape(events)).toEqual(['text,executableCode', 'codeExecutionResult', 'text']);
  expect(resultOf(events[1])).toEqual({ outcome: 'OUTCOME_OK', output: '42\nnode\n' });
  const [executionId] = await executionsStartingWith(prefix, 1);
  expect((await w.client.handle(executionId).result()).language).toBe('javascript');
  expect(await leftoversAfterCompletion(kube, w.client, executionId)).toEqual(NOTHING_LEFT);
});

test('with no worker polling its task queue, the executor answers within seconds with NoWorker and the fix', async () => {
  const { recorder, ask } = setup('print(1)');
  await ask();
  const ctx = recorder.contexts[0];
  const { temporal, policy } = loadConfig(process.env);
  const unserved = await SandboxClient.connect({ temporal, policy, taskQueue: uniqueId('test-adk-nobody') });
  try {
    const executor = new DurableSandboxCodeExecutor({ client: unserved, executionIdPrefix: uniqueId('adk-nobody') });
    const started = Date.now();
    const r = await executor.executeCode(callFor(ctx, 'print("must not run")'));
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('NoWorker');
    expect(r.stderr).toContain('npm run worker');
  } finally {
    await unserved.close();
  }
});

/** A scripted model for a conversation: turn n answers with codes[n] in a ```python block, then quotes the result. */
class ConversationLlm extends BaseLlm {
  private turn = 0;

  constructor(private readonly codes: string[]) {
    super({ model: 'scripted-conversation' });
  }

  override async *generateContentAsync(llmRequest: LlmRequest): AsyncGenerator<LlmResponse, void> {
    const last = textOf(llmRequest.contents[llmRequest.contents.length - 1]);
    const text = last.startsWith(RESULT_FENCE)
      ? `Done: ${last.slice(RESULT_FENCE.length, -'\n```'.length)}`
      : `\`\`\`python\n${this.codes[this.turn++]}\n\`\`\``;
    yield { content: { role: 'model', parts: [{ text }] } };
  }

  override async connect(): Promise<BaseLlmConnection> {
    throw new Error('no live connections');
  }
}

test('stateful: turn 1 defines x, turn 2 prints it (one session per ADK session); a retried block runs once', async () => {
  const prefix = uniqueId('adk-st');
  const executor = new DurableSandboxCodeExecutor({
    client: w.client,
    executionIdPrefix: prefix,
    stateful: true,
    timeoutSeconds: 60,
  });
  expect(executor.stateful).toBe(true);
  const model = new ConversationLlm(['x = 41\ncount = 0\nx', 'count += 1\nprint(x + 1, count)', 'print(x)']);
  const agent = new LlmAgent({ name: 'analyst', model, ...durableSandboxAgentOptions(executor) });
  const recorder = new InvocationRecorder();
  const runner = new InMemoryRunner({ agent, appName: 'adk-stateful', plugins: [recorder] });
  const say = async (sessionId: string, text: string) => {
    const results: string[] = [];
    for await (const e of runner.runAsync({ userId: 'u', sessionId, newMessage: { role: 'user', parts: [{ text }] } }))
      for (const p of e.content?.parts ?? []) if (p.codeExecutionResult) results.push(p.codeExecutionResult.output!);
    return results;
  };
  const adkSession = await runner.sessionService.createSession({ appName: 'adk-stateful', userId: 'u' });
  const other = await runner.sessionService.createSession({ appName: 'adk-stateful', userId: 'u' });
  const sessionId = executor.sessionIdFor(adkSession.id);
  try {
    expect(await say(adkSession.id, 'Define x.')).toEqual(['41\n']);
    expect(await say(adkSession.id, 'Print x + 1.')).toEqual(['42 1\n']);
    // The same call again (a caller that lost the answer): the first answer, and the block did not run twice.
    const retried = await executor.executeCode({
      invocationContext: recorder.contexts[1],
      codeExecutionInput: {
        code: 'count += 1\nprint(x + 1, count)',
        language: CodeExecutionLanguage.PYTHON,
        inputFiles: [],
        executionId: adkSession.id,
      },
    });
    expect(retried).toMatchObject({ stdout: '42 1\n', stderr: '' });
    expect((await w.client.getSession(sessionId).state()).runs).toBe(2);
    // Another ADK session has its own interpreter: x is not defined there.
    const [otherResult] = await say(other.id, 'Print x.');
    expect(otherResult).toMatch(/NameError: name 'x' is not defined/);
    expect(executor.sessionIdFor(other.id)).not.toBe(sessionId);
  } finally {
    await executor.closeSession(adkSession.id);
    await executor.closeSession(other.id);
  }
  expect(await sessionPods(kube, sessionId)).toEqual([]);
  expect(await sessionPods(kube, executor.sessionIdFor(other.id))).toEqual([]);
});

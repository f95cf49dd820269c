/**
 * The response processor that makes an LlmAgent run the code blocks its model writes through `agent.codeExecutor`.
 *
 * Why it exists: @google/adk 2.0.0 has one (CodeExecutionResponseProcessor) but never registers it
 * (`LlmAgent.responseProcessors` defaults to []) and does not export it, so an agent given a `codeExecutor` just
 * returns the model's ```python block as its final answer. The internal one also leaves `codeExecutionResult.output`
 * unset, so the model would read "undefined" instead of the output. This one uses public exports only, and does what
 * the internal one means to:
 * 1. The first fenced block (the executor's `codeBlockDelimiters`: ```tool_code, ```python, ```bash, ```sh, …) or
 *    `executableCode` part in a model response is cut out; an event with the text before it and the code as an
 *    `executableCode` part is emitted (text after the block is dropped, as ADK does).
 * 2. The executor runs it; an event with a `codeExecutionResult` part follows (`output`: stdout on success; stderr,
 *    then stdout, on failure), with output files saved as artifacts when the Runner has an artifact service, and
 *    images (displays, PNG and JPEG files) as inline data parts beside it, which the model sees.
 * 3. The model's raw response is suppressed, so the agent calls the model again; ADK's own request processor shows it
 *    the code and the result (```tool_code / ```tool_output).
 * A result with non-empty stderr is a failure, as in ADK; after `errorRetryAttempts` consecutive failures in one
 * invocation, code blocks are no longer run and the model's reply passes through as its answer.
 * If a later ADK release registers its own processor, giving `responseProcessors` still replaces the default list.
 */
import {
  BaseLlmResponseProcessor,
  BuiltInCodeExecutor,
  CodeExecutionLanguage,
  createEvent,
  createEventActions,
  isLlmAgent,
  type BaseCodeExecutor,
  type Event,
  type InvocationContext,
  type LlmResponse,
} from '@google/adk';
import { Language, Outcome, type Content, type Part } from '@google/genai';

const FENCE_LANGUAGE: Record<string, CodeExecutionLanguage> = {
  tool_code: CodeExecutionLanguage.PYTHON,
  python: CodeExecutionLanguage.PYTHON,
  py: CodeExecutionLanguage.PYTHON,
  bash: CodeExecutionLanguage.SHELL,
  sh: CodeExecutionLanguage.SHELL,
  shell: CodeExecutionLanguage.SHELL,
  javascript: CodeExecutionLanguage.JAVASCRIPT,
  js: CodeExecutionLanguage.JAVASCRIPT,
  typescript: CodeExecutionLanguage.TYPESCRIPT,
  ts: CodeExecutionLanguage.TYPESCRIPT,
};

export interface CodeBlock {
  code: string;
  language: CodeExecutionLanguage;
  /** The model's content up to the block, with the block as an executableCode part. */
  content: Content;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The first code block of a model response, or undefined. */
export function firstCodeBlock(content: Content, delimiters: Array<[string, string]>): CodeBlock | undefined {
  const parts = content.parts ?? [];
  const executable = parts.find((p) => p.executableCode?.code);
  if (executable?.executableCode?.code) {
    const language =
      executable.executableCode.language === Language.PYTHON
        ? CodeExecutionLanguage.PYTHON
        : CodeExecutionLanguage.UNSPECIFIED;
    return { code: executable.executableCode.code, language, content: { role: 'model', parts: [executable] } };
  }
  const text = parts.map((p) => p.text ?? '').join('\n');
  let first: { index: number; code: string; open: string } | undefined;
  for (const [open, close] of delimiters) {
    const m = new RegExp(`${escapeRegExp(open)}([\\s\\S]*?)${escapeRegExp(close)}`).exec(text);
    if (m && (!first || m.index < first.index)) first = { index: m.index, code: m[1], open };
  }
  if (!first) return undefined;
  const fence = first.open.replace(/^```/, '').trim().toLowerCase();
  const language = FENCE_LANGUAGE[fence] ?? CodeExecutionLanguage.UNSPECIFIED;
  const prefix = text.slice(0, first.index);
  const executableCode = {
    code: first.code,
    language: language === CodeExecutionLanguage.PYTHON ? Language.PYTHON : Language.LANGUAGE_UNSPECIFIED,
  };
  return {
    code: first.code,
    language,
    content: { role: 'model', parts: [...(prefix ? [{ text: prefix }] : []), { executableCode }] },
  };
}

/** Failed results at the end of this invocation's code executions so far (a success resets the count). */
function consecutiveFailures(ctx: InvocationContext): number {
  let n = 0;
  for (const e of ctx.session.events) {
    if (e.invocationId !== ctx.invocationId) continue;
    const result = e.content?.parts?.find((p) => p.codeExecutionResult)?.codeExecutionResult;
    if (result) n = result.outcome === Outcome.OUTCOME_OK ? 0 : n + 1;
  }
  return n;
}

export class CodeBlockProcessor extends BaseLlmResponseProcessor {
  override async *runAsync(ctx: InvocationContext, llmResponse: LlmResponse): AsyncGenerator<Event, void, void> {
    const agent = ctx.agent;
    if (llmResponse.partial || !llmResponse.content || !agent || !isLlmAgent(agent)) return;
    const executor = agent.codeExecutor;
    if (!executor || executor instanceof BuiltInCodeExecutor) return;
    if (consecutiveFailures(ctx) >= executor.errorRetryAttempts) return;
    const block = firstCodeBlock(llmResponse.content, executor.codeBlockDelimiters);
    if (!block) return;

    const event = (content: Content, actions = createEventActions()) =>
      createEvent({ invocationId: ctx.invocationId, author: agent.name, branch: ctx.branch, content, actions });
    yield event(block.content);

    const result = await executor.executeCode({
      invocationContext: ctx,
      codeExecutionInput: {
        code: block.code,
        language: block.language,
        inputFiles: [],
        ...(executor.stateful ? { executionId: ctx.session.id } : {}),
      },
    });

    const actions = createEventActions();
    const saved: string[] = [];
    for (const f of result.outputFiles) {
      if (!ctx.artifactService) break;
      actions.artifactDelta[f.name] = await ctx.artifactService.saveArtifact({
        filename: f.name,
        artifact: { inlineData: { data: f.content, mimeType: f.mimeType } },
      });
      saved.push(f.name);
    }
    const failed = result.stderr !== '';
    let output = failed
      ? `${result.stderr}${result.stdout ? `\n--- stdout ---\n${result.stdout}` : ''}`
      : result.stdout;
    if (result.outputFiles.length) {
      output += saved.length
        ? `\nSaved artifacts: ${saved.join(', ')}\n`
        : `\nOutput files not saved (the Runner has no artifact service): ${result.outputFiles.map((f) => f.name).join(', ')}\n`;
    }
    const part: Part = {
      text: output,
      codeExecutionResult: { outcome: failed ? Outcome.OUTCOME_FAILED : Outcome.OUTCOME_OK, output },
    };
    // Images (a figure the program showed, a PNG it wrote) go with the result as inline data: the model sees them.
    // Before the result part: ADK takes an event whose last part is a code execution result for one that is not
    // final (the agent calls the model again).
    const images: Part[] = result.outputFiles
      .filter((f) => (f.mimeType === 'image/png' || f.mimeType === 'image/jpeg') && f.content)
      .map((f) => ({ inlineData: { data: f.content, mimeType: f.mimeType } }));
    yield event({ role: 'model', parts: [...images, part] }, actions);

    // No event for the raw response: the result event is not final, so the agent calls the model again.
    llmResponse.content = undefined;
  }
}

/**
 * What to spread into `new LlmAgent({...})` so the agent runs its model's code blocks with `executor`:
 * `new LlmAgent({ name, model, instruction, ...durableSandboxAgentOptions(executor) })`.
 */
export function durableSandboxAgentOptions(executor: BaseCodeExecutor): {
  codeExecutor: BaseCodeExecutor;
  responseProcessors: BaseLlmResponseProcessor[];
} {
  return { codeExecutor: executor, responseProcessors: [new CodeBlockProcessor()] };
}

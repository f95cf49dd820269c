/**
 * durable-sandbox for Google's Agent Development Kit (@google/adk 2.x): an LlmAgent whose model writes code runs it
 * in a gVisor pod through a SandboxClient.
 *
 *   const executor = new DurableSandboxCodeExecutor({ client: await SandboxClient.connect() });
 *   const agent = new LlmAgent({ name: 'analyst', model, instruction: SANDBOX_INSTRUCTION, ...durableSandboxAgentOptions(executor) });
 */
export {
  DurableSandboxCodeExecutor,
  STDERR_MARKER,
  sandboxFileName,
  toCodeExecutionResult,
  type DurableSandboxCodeExecutorOptions,
} from './code-executor';
export { CodeBlockProcessor, durableSandboxAgentOptions, firstCodeBlock, type CodeBlock } from './code-block-processor';
import { LANGUAGE_NAMES } from '../../client';

/** What a model needs to know to write code for the sandbox; add it to the agent's instruction. */
export const SANDBOX_INSTRUCTION = [
  `To compute something, answer with one fenced code block (${LANGUAGE_NAMES.map((l) => '```' + l).join(', ')}); it runs in an isolated sandbox`,
  'without network access, and you then see its output. Input files are read-only under /sandbox/files/;',
  'files written under /sandbox/out/ are returned as artifacts. Write the final answer as plain text, without code blocks.',
].join(' ');

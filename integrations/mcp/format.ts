/**
 * How run_code answers: an ExecutionResult (or a refusal) as MCP tool-result content. The text block is what a model
 * reads first (status, exit code, ids, then the program's output); image output files follow as image content, text
 * output files as text blocks of their own.
 */
import { displayImages, displayText, droppedDisplaysNote } from '../../core/displays';
import { networkNotes } from '../../core/egress';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { ExecutionResult, OutputFile, SessionRunResult } from '../../client';

/** Output files sent as MCP image content (what MCP clients and models commonly display). */
export const IMAGE_MIME_TYPES: ReadonlySet<string> = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);

type Content = CallToolResult['content'][number];

function outcome(r: ExecutionResult): string {
  switch (r.status) {
    case 'succeeded':
      return 'the program exited 0';
    case 'failed':
      return `the program exited with code ${r.exitCode}`;
    case 'timed_out':
      return 'the program ran past its time limit (timeoutSeconds) and was stopped';
    case 'oom_killed':
      return 'the program ran out of memory and was killed';
    case 'cancelled':
      return 'the execution was cancelled before the program finished';
    case 'infra_error':
      return 'the sandbox infrastructure failed; the program may not have run';
    case 'sandbox_lost':
      return "the session's sandbox was lost while the program ran; it was not re-run (it may have run in part), and the next call gets a new sandbox with the session's state rebuilt";
    default:
      return String(r.status);
  }
}

function stream(label: string, text: string, info: ExecutionResult['stdoutInfo'] | undefined): string {
  if (!text && !info?.truncated) return `--- ${label} (empty) ---`;
  const cut = info?.truncated ? ` (truncated: ${info.capturedBytes} of ${info.totalBytes} bytes kept)` : '';
  return `--- ${label}${cut} ---\n${text.endsWith('\n') ? text.slice(0, -1) : text}`;
}

function isImage(f: OutputFile): boolean {
  return IMAGE_MIME_TYPES.has(f.mimeType) && f.encoding === 'base64' && !f.truncated && f.content.length > 0;
}

function isText(f: OutputFile): boolean {
  return f.encoding === 'utf8';
}

function fileLine(f: OutputFile): string {
  const how = isImage(f)
    ? 'attached as an image'
    : isText(f)
      ? f.truncated
        ? 'text, truncated, shown below as far as it was kept'
        : 'text, shown below'
      : f.truncated
        ? 'binary, truncated, not attached'
        : 'binary, not attached';
  return `- ${f.name} (${f.mimeType}, ${f.sizeBytes} bytes): ${how}`;
}

/** The tool result of a run in the connection's session, with what the model should know of its state. */
export function sessionRunContent(r: SessionRunResult, notes: string[]): CallToolResult {
  return executionResultContent(r, [
    `session: ${r.sessionId}, run ${r.seq} (interpreter ${r.session.interpreter})`,
    ...notes,
  ]);
}

/** The tool result of a finished execution; `isError` unless it succeeded. */
export function executionResultContent(r: ExecutionResult, extraHead: string[] = []): CallToolResult {
  const files: OutputFile[] = (r as { outputFiles?: OutputFile[] }).outputFiles ?? [];
  const head = [
    `status: ${r.status} (${outcome(r)})`,
    `exit code: ${r.exitCode ?? 'none'}`,
    `execution id: ${r.executionId}`,
    `sandbox: ${r.sandbox}`,
    ...extraHead,
  ];
  if (r.durationMs !== undefined) head.push(`duration: ${r.durationMs} ms`);
  if (r.attempts > 1)
    head.push(`attempts: ${r.attempts} (earlier sandboxes failed: ${r.attemptErrors.map((e) => e.reason).join(', ')})`);
  if (r.error) head.push(`error: ${r.error.reason}: ${r.error.message}`);
  if (r.network) {
    for (const c of r.network.reached) head.push(`network: reached ${c.host}:${c.port} (${c.sent + c.received} bytes)`);
    // A refused domain says so, and which option allows one (the server's: the model cannot change it).
    head.push(...networkNotes(r.network, "the MCP server's --allow-net option (its operator's)"));
  }
  const displays = r.displays ?? [];
  const dropped = droppedDisplaysNote(r.displaysInfo);
  if (displays.length > 0 || dropped)
    head.push(
      `displays: ${displays.length} (images attached as images, HTML and markdown as text)${dropped ? ` ${dropped}` : ''}`,
    );
  const parts = [head.join('\n'), stream('stdout', r.stdout, r.stdoutInfo), stream('stderr', r.stderr, r.stderrInfo)];
  if (files.length > 0) parts.push(`--- output files (/sandbox/out) ---\n${files.map(fileLine).join('\n')}`);

  const content: Content[] = [{ type: 'text', text: parts.join('\n\n') }];
  // Display data as MCP shows it: images as image content, the rest as text (HTML and markdown as they are).
  displays.forEach((d, i) => {
    for (const image of displayImages(d)) content.push({ type: 'image', data: image.data, mimeType: image.mimeType });
    const rich =
      d['text/html'] !== undefined ? 'text/html' : d['text/markdown'] !== undefined ? 'text/markdown' : undefined;
    const text = rich ? d[rich] : displayImages(d).length ? '' : displayText(d);
    if (text) content.push({ type: 'text', text: `--- display ${i + 1}${rich ? ` (${rich})` : ''} ---\n${text}` });
  });
  for (const f of files) {
    if (isImage(f)) content.push({ type: 'image', data: f.content, mimeType: f.mimeType });
    else if (isText(f))
      content.push({
        type: 'text',
        text: `--- /sandbox/out/${f.name}${f.truncated ? ' (truncated)' : ''} ---\n${f.content}`,
      });
  }
  return { content, ...(r.status === 'succeeded' ? {} : { isError: true }) };
}

/** A tool-level error: the text, and `isError`. */
export function errorContent(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}

/**
 * An ADK (@google/adk) code executor that runs each code block as a durable-sandbox execution: a fresh gVisor pod,
 * orchestrated by Temporal, through a SandboxClient. Nothing carries over between blocks, unless `stateful`.
 *
 * Stateful (`stateful: true`): ADK then gives every call the execution id of its conversation (the ADK session id),
 * and each Python block runs in one durable-sandbox session per execution id (`<prefix>-session-<execution id>`,
 * opened by the first block, attached to by any process after): variables, imports and files carry over from block to
 * block and from turn to turn, and survive the loss of the session's pod (the session rebuilds them). A session that
 * ended (closed, past its lifetime) is replaced by a new, empty one, and the model is told so. `closeSession(id)` ends
 * one. Languages without a kept interpreter (shell, JavaScript) still run one-shot. A retried call (same invocation,
 * same block) is sent under the same run id and gets the first call's answer: the block runs once.
 *
 * stdout and stderr. ADK treats any non-empty `stderr` as a failed execution: the model is shown the stderr, and
 * `errorRetryAttempts` consecutive failures make the agent stop running code. So what goes where follows the outcome,
 * not the stream the program happened to write to:
 * - succeeded (exit 0): `stderr` is ''. What the program wrote to stderr (warnings, logging, progress bars) is not
 *   lost: it follows its stdout, after a line `--- stderr (the program exited 0) ---`, so the model still reads it.
 * - any other status (failed, timed_out, oom_killed, cancelled, infra_error, sandbox_lost): `stderr` is never empty. Its first line
 *   says what happened and where (`Execution failed: the program exited with code 3. [execution <id>]`), the
 *   program's own stderr follows. `stdout` stays the program's stdout, as far as it got.
 * Notes the model should know (a stream or output file cut at its cap, an input file renamed) end `stdout`.
 *
 * Execution ids. The execution id is derived, never random: `<prefix>-<scope>-<hash>`, where the scope is the ADK
 * invocation id and the hash covers the scope and the whole sandbox input (code, language, files, limits). A retried
 * call (the same invocation asking for the same code block again, e.g. after the caller lost the first answer) starts
 * nothing new: it attaches to the execution already under that id, running or finished, and gets the same result;
 * the program runs once. A new invocation (the next user message) runs the code again. Within one invocation an
 * identical block with identical files runs once, and the model sending it again gets the first result.
 * `codeExecutionInput.executionId`, which ADK sets (to the session id) only for `stateful` executors, takes the place
 * of the invocation id as the scope when a caller sets it: it scopes the ids rather than being one, so two different
 * blocks never share an execution.
 *
 * Files. ADK input files (base64 unless `contentEncoding` says utf-8) are mounted read-only at /sandbox/files/<name>;
 * a name the sandbox cannot hold (a directory part, a space, …) is reduced to its last path segment with other
 * characters replaced by '_' (and noted in stdout), and refused with an Error when two files would get the same name
 * or nothing usable is left. Output files (what the program wrote under /sandbox/out) come back as ADK Files, content
 * base64 whatever the sandbox's encoding.
 */
import { displayFileName, displayImages, displayText, droppedDisplaysNote } from '../../core/displays';
import { networkNotes, type NetworkOptions } from '../../core/egress';
import { createHash } from 'node:crypto';
import {
  BaseCodeExecutor,
  CodeExecutionLanguage,
  FileContentEncoding,
  type CodeExecutionInput,
  type CodeExecutionResult,
  type ExecuteCodeParams,
  type File,
} from '@google/adk';
import { SessionClosedError, type Session, type SessionOptions } from '../../client';
import type {
  ExecutionInput,
  ExecutionResult,
  InputFile,
  Language,
  OutputFile,
  ResourceLimits,
  SandboxClient,
} from '../../client';
import {
  DEFAULT_LANGUAGE,
  LANGUAGE_NAMES,
  languageNamed,
  LANGUAGES,
  SESSION_LANGUAGES,
  sessionRunNotes,
  type LanguageSpec,
} from '../../client';

export interface DurableSandboxCodeExecutorOptions {
  client: SandboxClient;
  /** The language of a block whose language ADK leaves unspecified. Default: DEFAULT_LANGUAGE (python). */
  language?: Language;
  /** The program's wall-clock limit; default: the worker's. */
  timeoutSeconds?: number;
  /** The sandbox's CPU and memory limits; default: the worker's. */
  limits?: ResourceLimits;
  /** Starts every execution id. Letters, digits and . _ : @ / - . Default 'adk'. */
  executionIdPrefix?: string;
  /** Keep each conversation's interpreter (see the header). Default false. */
  stateful?: boolean;
  /** A stateful executor's sessions: pod idle release and lifetime (the defaults of openSession otherwise). */
  session?: Pick<SessionOptions, 'idleTimeoutSeconds' | 'maxLifetimeSeconds'>;
  /**
   * Network egress for every block: the domains its code may reach through the worker's egress gateway (within the
   * worker's ceiling). The application's setting, never the model's.
   */
  network?: NetworkOptions;
}

/** What precedes the program's stderr in stdout when it exited 0. */
export const STDERR_MARKER = '--- stderr (the program exited 0) ---';

const SANDBOX_FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
const ID_UNSAFE = /[^A-Za-z0-9._:@/-]/g;
const MAX_SCOPE_LENGTH = 120;

/** ADK's names (python, javascript, shell, …) are names or aliases in the language list; unspecified: the fallback. */
function toSandboxLanguage(language: CodeExecutionLanguage | undefined, fallback: Language): Language | undefined {
  if (language === undefined || language === CodeExecutionLanguage.UNSPECIFIED) return fallback;
  return languageNamed(language);
}

/** The name a file gets in /sandbox/files: its last path segment, characters the sandbox refuses replaced by '_'. */
export function sandboxFileName(name: string): string {
  const last = name.split(/[/\\]/).pop() ?? '';
  return last.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[.-]/, '_');
}

function toInputFiles(files: File[]): { files: InputFile[]; renamed: string[] } {
  const byName = new Map<string, string>();
  const renamed: string[] = [];
  const out = files.map((f): InputFile => {
    const name = sandboxFileName(f.name);
    if (!SANDBOX_FILE_NAME.test(name)) throw new Error(`input file "${f.name}" has no name the sandbox can hold`);
    const clash = byName.get(name);
    if (clash !== undefined)
      throw new Error(`input files "${clash}" and "${f.name}" would both be /sandbox/files/${name}`);
    byName.set(name, f.name);
    if (name !== f.name) renamed.push(`[input file "${f.name}" is /sandbox/files/${name}]`);
    return { name, content: f.content, encoding: f.contentEncoding === FileContentEncoding.UTF8 ? 'utf8' : 'base64' };
  });
  return { files: out, renamed };
}

function toAdkFile(f: OutputFile): File {
  const content = f.encoding === 'base64' ? f.content : Buffer.from(f.content, 'utf8').toString('base64');
  return { name: f.name, content, contentEncoding: FileContentEncoding.BASE64, mimeType: f.mimeType };
}

/** One line: what happened to a run that did not succeed. */
function failureLine(r: ExecutionResult, input: ExecutionInput): string {
  const where = `[execution ${r.executionId}]`;
  switch (r.status) {
    case 'timed_out':
      return `Execution timed out: the program ran past its ${input.timeoutSeconds ? `${input.timeoutSeconds} s ` : ''}time limit and was stopped. ${where}`;
    case 'oom_killed':
      return `Execution failed: the program ran out of memory${input.limits?.memory ? ` (limit ${input.limits.memory})` : ''} and was killed. ${where}`;
    case 'cancelled':
      return `Execution cancelled before the program finished. ${where}`;
    case 'infra_error':
      return `Execution failed: sandbox infrastructure error${r.error ? ` ${r.error.reason}: ${r.error.message}` : ''} (not the program's fault). ${where}`;
    case 'sandbox_lost':
      return `Execution lost: the session's sandbox was lost while the code ran; it was not re-run (it may have run in part), and the next code block gets a new sandbox with the earlier blocks' state rebuilt. ${where}`;
    default:
      return `Execution ${r.status}: the program exited with code ${r.exitCode ?? 'none'}. ${where}`;
  }
}

/** Maps a sandbox result to what ADK expects (see the header for what goes where). */
export function toCodeExecutionResult(
  r: ExecutionResult,
  input: ExecutionInput,
  notes: string[] = [],
): CodeExecutionResult {
  const outputFiles = (r as ExecutionResult & { outputFiles?: OutputFile[] }).outputFiles ?? [];
  // The model is told what the network refused, and which option allows a domain (the application's, not its own).
  const extra = [...notes, ...networkNotes(r.network, "the executor's network.allow option")];
  if (r.stdoutInfo.truncated)
    extra.push(`[stdout truncated: ${r.stdoutInfo.capturedBytes} of ${r.stdoutInfo.totalBytes} bytes kept]`);
  if (r.stderrInfo.truncated)
    extra.push(`[stderr truncated: ${r.stderrInfo.capturedBytes} of ${r.stderrInfo.totalBytes} bytes kept]`);
  for (const f of outputFiles.filter((o) => o.truncated))
    extra.push(`[output file ${f.name} truncated: it has ${f.sizeBytes} bytes]`);

  // Display data: images go to the model as inline data (ADK's output files), the text forms in stdout.
  const displays = r.displays ?? [];
  const displayFiles: File[] = [];
  displays.forEach((d, i) => {
    const images = displayImages(d);
    for (const image of images)
      displayFiles.push({
        name: displayFileName(i, image.mimeType),
        content: image.data,
        contentEncoding: FileContentEncoding.BASE64,
        mimeType: image.mimeType,
      });
    extra.push(
      `[display ${i + 1}${images.length ? `: ${images.map((x) => displayFileName(i, x.mimeType)).join(', ')}` : ''}] ${displayText(d)}`,
    );
  });
  const dropped = droppedDisplaysNote(r.displaysInfo);
  if (dropped) extra.push(dropped);
  const ok = r.status === 'succeeded' && r.exitCode === 0;
  let stdout = r.stdout;
  if (ok && r.stderr) stdout += `${stdout && !stdout.endsWith('\n') ? '\n' : ''}${STDERR_MARKER}\n${r.stderr}`;
  if (extra.length) stdout += `${stdout && !stdout.endsWith('\n') ? '\n' : ''}${extra.join('\n')}\n`;
  const stderr = ok ? '' : `${failureLine(r, input)}\n${r.stderr}`;
  return { stdout, stderr, outputFiles: [...outputFiles.map(toAdkFile), ...displayFiles] };
}

function keepsInterpreter(language: Language | undefined): boolean {
  return language !== undefined && (LANGUAGES[language] as LanguageSpec).sessionKernel !== undefined;
}

export class DurableSandboxCodeExecutor extends BaseCodeExecutor {
  readonly client: SandboxClient;
  private readonly language: Language;
  private readonly timeoutSeconds?: number;
  private readonly limits?: ResourceLimits;
  private readonly executionIdPrefix: string;
  private readonly sessionOptions: DurableSandboxCodeExecutorOptions['session'];
  private readonly network?: NetworkOptions;
  /** The sessions this executor has opened or attached to, by session id. */
  private readonly sessions = new Map<string, Promise<Session>>();

  constructor(options: DurableSandboxCodeExecutorOptions) {
    super();
    this.client = options.client;
    this.language = options.language ?? DEFAULT_LANGUAGE;
    this.timeoutSeconds = options.timeoutSeconds;
    this.limits = options.limits;
    this.executionIdPrefix = options.executionIdPrefix ?? 'adk';
    this.stateful = options.stateful ?? false;
    this.sessionOptions = options.session;
    if (options.network) this.network = options.network;
  }

  /**
   * The durable-sandbox session of an ADK execution id (a stateful executor's conversation) for a language: one per
   * language that keeps an interpreter (the default language's id has no language in it).
   */
  sessionIdFor(executionId: string, language: Language = DEFAULT_LANGUAGE): string {
    const hash = createHash('sha256').update(executionId).digest('hex').slice(0, 8);
    const scope = executionId.replace(ID_UNSAFE, '_').slice(0, MAX_SCOPE_LENGTH);
    return `${this.executionIdPrefix}-session-${scope}-${hash}${language === DEFAULT_LANGUAGE ? '' : `-${language}`}`;
  }

  /** Ends the session of an ADK execution id (its pod goes); a later block opens a new, empty one. */
  async closeSession(executionId: string): Promise<void> {
    await Promise.all(
      SESSION_LANGUAGES.map(async (language) => {
        const sessionId = this.sessionIdFor(executionId, language);
        const opened = this.sessions.has(sessionId);
        this.sessions.delete(sessionId);
        // The default language's is closed whatever this process knows of it (another process may have opened it).
        if (opened || language === DEFAULT_LANGUAGE) await this.client.getSession(sessionId).close();
      }),
    );
  }

  private session(sessionId: string, input: ExecutionInput, fresh = false): Promise<Session> {
    let s = this.sessions.get(sessionId);
    if (!s || fresh) {
      s = this.client.openSession({
        sessionId,
        ifOpen: 'attach',
        language: input.language,
        ...(input.timeoutSeconds !== undefined ? { timeoutSeconds: input.timeoutSeconds } : {}),
        ...(input.limits ? { limits: input.limits } : {}),
        ...(this.network ? { network: this.network } : {}),
        ...this.sessionOptions,
      });
      this.sessions.set(sessionId, s);
      s.catch(() => this.sessions.delete(sessionId));
    }
    return s;
  }

  /** Runs a block in its conversation's session; a session that has ended is replaced once, and the model told. */
  private async runInSession(executionId: string, params: ExecuteCodeParams, input: ExecutionInput) {
    const sessionId = this.sessionIdFor(executionId, input.language);
    const runId = this.idFor(params, input);
    const run = async (fresh: boolean) =>
      (await this.session(sessionId, input, fresh)).run(input.code, {
        runId,
        ...(input.files ? { files: input.files } : {}),
      });
    try {
      return { result: await run(false), notes: [] as string[] };
    } catch (err) {
      if (!(err instanceof SessionClosedError)) throw err;
      const result = await run(true);
      return { result, notes: ['[the earlier session had ended: this block ran in a new one, without its state]'] };
    }
  }

  /** The sandbox input for an ADK call; undefined when the sandbox does not run its language. */
  private toInput(c: CodeExecutionInput): { input: ExecutionInput; notes: string[] } | undefined {
    const language = toSandboxLanguage(c.language, this.language);
    if (!language) return undefined;
    const { files, renamed } = toInputFiles(c.inputFiles ?? []);
    const input: ExecutionInput = {
      code: c.code,
      language,
      ...(this.timeoutSeconds !== undefined ? { timeoutSeconds: this.timeoutSeconds } : {}),
      ...(files.length ? { files } : {}),
      ...(this.limits ? { limits: this.limits } : {}),
      ...(this.network ? { network: this.network } : {}),
    };
    return { input, notes: renamed };
  }

  private idFor(params: ExecuteCodeParams, input: ExecutionInput): string {
    const scope = params.codeExecutionInput.executionId ?? params.invocationContext.invocationId;
    const hash = createHash('sha256')
      .update(JSON.stringify([scope, input]))
      .digest('hex')
      .slice(0, 16);
    return `${this.executionIdPrefix}-${scope.replace(ID_UNSAFE, '_').slice(0, MAX_SCOPE_LENGTH)}-${hash}`;
  }

  /** The execution id a call runs under (to look it up or cancel it with the client); undefined if it would not run. */
  executionIdFor(params: ExecuteCodeParams): string | undefined {
    const mapped = this.toInput(params.codeExecutionInput);
    return mapped && this.idFor(params, mapped.input);
  }

  override async executeCode(params: ExecuteCodeParams): Promise<CodeExecutionResult> {
    const mapped = this.toInput(params.codeExecutionInput);
    if (!mapped) {
      const language = params.codeExecutionInput.language;
      return {
        stdout: '',
        stderr: `Unsupported language "${language}": this sandbox runs ${LANGUAGE_NAMES.join(', ')}.\n`,
        outputFiles: [],
      };
    }
    const conversation = params.codeExecutionInput.executionId;
    if (this.stateful && conversation !== undefined && keepsInterpreter(mapped.input.language)) {
      const { result, notes } = await this.runInSession(conversation, params, mapped.input);
      return toCodeExecutionResult(result, mapped.input, [...mapped.notes, ...notes, ...sessionRunNotes(result)]);
    }
    const executionId = this.idFor(params, mapped.input);
    const result = await this.client.executeCode(mapped.input, { executionId });
    return toCodeExecutionResult(result, mapped.input, mapped.notes);
  }
}

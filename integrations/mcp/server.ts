/**
 * An MCP server with one tool, `run_code`: runs a program in a fresh durable-sandbox execution (a gVisor pod,
 * orchestrated by Temporal) through a SandboxClient and answers with its status, exit code, output and output files.
 * Transports: ./stdio.ts (serveStdio) and ./http.ts (serveHttp, Streamable HTTP).
 *
 * - Result: a text block (status, exit code, execution id, warm/cold sandbox, stdout, stderr, the infrastructure
 *   error if any, a list of output files), then image output files (PNG, JPEG, GIF, WebP) as image content and text
 *   output files as text blocks. `isError` is set for every status but `succeeded` (a non-zero exit, time limit,
 *   out of memory, cancelled, infrastructure failure) and for bad input, whose message names the field and the
 *   limit it broke. Nothing runs for bad input.
 * - Progress: when the request carries a progressToken, `notifications/progress` goes out per phase (queued,
 *   starting, running, finishing), each message naming the execution id, and repeats while a phase lasts (see
 *   ./progress.ts).
 * - Cancellation: when the call is cancelled (the client's `notifications/cancelled`, its request timeout, or the
 *   connection closing) the execution is cancelled too (SandboxClient.cancelExecution): its pod is stopped and
 *   removed, and nothing keeps running for a caller that is gone. A cancel that comes while the execution is still
 *   being started is retried until the start has happened.
 * - Sessions (on unless `sessions: false`): the calls of one connection in one language share one durable-sandbox
 *   session (one per language: Python, bash, JavaScript, TypeScript), so a model's successive calls keep their
 *   variables, imports and files. It opens with the first such call and closes when the connection ends (the server
 *   closes); `reset_session` closes it, and the next call opens a fresh one. Another connection never sees it. Cancelling a call that runs in the
 *   session stops it by closing the session (its pod goes); the next call starts afresh, and says so.
 * - Execution ids: every call gets a fresh random id (`mcp-<uuid>` unless `newExecutionId` says otherwise); the tool
 *   does not take one. An id would let one MCP client attach to (and, by cancelling, stop) another's execution on a
 *   shared server, and a model has no good way to choose one. The id is in every progress message and in the result,
 *   for looking the execution up (SandboxClient.getExecution, the Temporal UI).
 */
import type { NetworkOptions } from '../../core/egress';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import {
  DEFAULT_LANGUAGE,
  InvalidInputError,
  LANGUAGE_NAMES,
  LANGUAGES,
  type ExecutionInput,
  type Language,
  type SandboxClient,
  type SessionOptions,
} from '../../client';
import { SESSION_LANGUAGES } from '../../core/languages';
import type { CallTracker } from './calls';
import { errorContent, executionResultContent, sessionRunContent } from './format';
import { ConnectionSession } from './session';
import { ProgressReporter } from './progress';

export const RUN_CODE_TOOL = 'run_code';
export const SERVER_NAME = 'durable-sandbox';
export const SERVER_VERSION = '0.1.0';

/** What the server needs of a SandboxClient. */
export type SandboxClientLike = Pick<
  SandboxClient,
  'executeCode' | 'cancelExecution' | 'getExecution' | 'openSession' | 'getSession'
>;

export interface CreateMcpServerOptions {
  client: SandboxClientLike;
  /** The id of each call's execution. Default: `mcp-<random uuid>`. */
  newExecutionId?: () => string;
  /** Repeat the current progress report after this long without a change (0: never). Default 15 s. */
  progressHeartbeatMs?: number;
  /** The calls in flight on this server's connection (transports pass one, to stop and await them on close). */
  calls?: CallTracker;
  /** Diagnostics; default: stderr (never stdout: it is the stdio transport's channel). */
  log?: (msg: string) => void;
  name?: string;
  version?: string;
  /** One session per connection for the languages that keep an interpreter (see the header). Default true. */
  sessions?: boolean;
  /** The connection's session: pod idle release and lifetime (openSession's defaults otherwise). */
  sessionOptions?: Pick<SessionOptions, 'idleTimeoutSeconds' | 'maxLifetimeSeconds'>;
  /** How long closing the server waits for its session to take the close request. Default 15 s. */
  sessionCloseTimeoutMs?: number;
  /**
   * Network egress for every call of this server (its sessions and one-shot runs): the server's configuration
   * (`durable-sandbox mcp --allow-net DOMAIN`), never a tool argument, so the model cannot widen it.
   */
  network?: NetworkOptions;
}

export const RESET_SESSION_TOOL = 'reset_session';

const SESSION_TITLES = SESSION_LANGUAGES.map((l) => LANGUAGES[l].title).join(', ');

const LANGUAGE_TITLES = LANGUAGE_NAMES.map((l) => LANGUAGES[l].title).join(', ');

/** What a program can read and write, and what failure and cancellation mean: the same with or without sessions. */
const RUN_CODE_COMMON = [
  'Input files given in `files` are readable at /sandbox/files/<name>. Files the program writes under /sandbox/out',
  'come back with the result: PNG, JPEG, GIF and WebP images as images, text files as text.',
  'A program that fails (non-zero exit, time limit, out of memory) is reported as an error with its output.',
  'Cancelling the call stops the program.',
];

/** run_code's description when each call gets a fresh sandbox. */
export const RUN_CODE_DESCRIPTION = [
  `Run a program (${LANGUAGE_TITLES}) in a fresh, isolated sandbox (a gVisor pod; nothing is kept between calls) and`,
  'return its status, exit code, stdout and stderr.',
  ...RUN_CODE_COMMON,
].join(' ');

/** run_code's description when the connection keeps a session. */
export const RUN_CODE_SESSION_DESCRIPTION = [
  `Run a program (${LANGUAGE_TITLES}) in an isolated sandbox (a gVisor pod) and return its status, exit code,`,
  `stdout and stderr. ${SESSION_TITLES} calls share one interpreter for this conversation, as notebook cells do:`,
  'variables, imports, the working directory and files persist from call to call, and a trailing expression is shown.',
  `Other languages run in a fresh sandbox each call. ${RESET_SESSION_TOOL} starts the interpreter afresh.`,
  ...RUN_CODE_COMMON,
].join(' ');

const inputSchema = {
  code: z.string().describe('The program source.'),
  language: z
    .enum(LANGUAGE_NAMES)
    .default(DEFAULT_LANGUAGE)
    .describe(LANGUAGE_NAMES.map((l) => `${l}: ${LANGUAGES[l].title}`).join('; ') + ` (default ${DEFAULT_LANGUAGE}).`),
  timeoutSeconds: z
    .number()
    .int()
    .optional()
    .describe("Wall-clock limit for the program, in seconds (default: the server's, usually 60)."),
  files: z
    .array(
      z.object({
        name: z.string().describe('A plain file name (letters, digits, . _ -), mounted at /sandbox/files/<name>.'),
        content: z.string().describe('The content: text, or base64 when encoding is base64.'),
        encoding: z.enum(['utf8', 'base64']).optional().describe('utf8 (default) or base64.'),
      }),
    )
    .optional()
    .describe('Small read-only input files for the program.'),
};

export function stderrLog(msg: string): void {
  process.stderr.write(`[durable-sandbox mcp] ${msg}\n`);
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function isInvalidInput(err: unknown): err is InvalidInputError {
  return err instanceof InvalidInputError || (err instanceof Error && err.name === 'InvalidInputError');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Cancels an execution whose caller went away. Not found means not started yet (the start is on its way: retried
 * for a while) or already closed (nothing to stop).
 */
async function cancelWhenStarted(
  client: SandboxClientLike,
  executionId: string,
  neverStarts: () => boolean,
  log: (msg: string) => void,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await client.cancelExecution(executionId);
      log(`execution ${executionId}: cancelled`);
      return;
    } catch (err) {
      if (!(err instanceof Error && err.name === 'WorkflowNotFoundError')) {
        log(`execution ${executionId}: could not cancel it: ${errorMessage(err)}`);
        return;
      }
    }
    const state = await client.getExecution(executionId).then(
      (s) => s.state as string,
      (err: unknown) => (err instanceof Error && err.name === 'WorkflowNotFoundError' ? 'missing' : 'unknown'),
    );
    if (state !== 'missing') return; // closed already (or it cannot be told): nothing left to stop
    if (neverStarts()) return;
    if (Date.now() > deadline) {
      log(`execution ${executionId}: gave up cancelling it, it never started`);
      return;
    }
    await sleep(250);
  }
}

/** Resolves true once validation (synchronous, at the start of executeCode) has passed. */
function pendingAfterValidation(running: Promise<unknown>): Promise<boolean> {
  return Promise.race([
    running.then(
      () => false,
      () => false,
    ),
    new Promise<boolean>((resolve) => setImmediate(() => resolve(true))),
  ]);
}

type RunCodeArgs = {
  code: string;
  language: Language;
  timeoutSeconds?: number;
  files?: { name: string; content: string; encoding?: 'utf8' | 'base64' }[];
};

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

export function createMcpServer(options: CreateMcpServerOptions): McpServer {
  const { client, calls } = options;
  const log = options.log ?? stderrLog;
  const newExecutionId = options.newExecutionId ?? (() => `mcp-${randomUUID()}`);
  const sessions = options.sessions ?? true;
  // One session per language that keeps an interpreter (Python's, bash's), opened by the first call in it.
  const perLanguage = new Map<Language, ConnectionSession>();
  const sessionFor = (language: Language): ConnectionSession => {
    let s = perLanguage.get(language);
    if (!s) {
      s = new ConnectionSession(
        client,
        log,
        { ...options.sessionOptions, language, ...(options.network ? { network: options.network } : {}) },
        options.sessionCloseTimeoutMs,
      );
      perLanguage.set(language, s);
    }
    return s;
  };
  /** Closes the connection's sessions; resolves with the ids of those that were open. */
  const closeSessions = async (why: string): Promise<string[]> =>
    (await Promise.all([...perLanguage.values()].map((s) => s.close(why)))).filter((id): id is string => !!id);
  const server = new SandboxMcpServer(
    { name: options.name ?? SERVER_NAME, version: options.version ?? SERVER_VERSION },
    () => closeSessions('the MCP connection ended'),
  );

  async function runInSession(
    s: ConnectionSession,
    args: RunCodeArgs,
    stop: AbortSignal,
    extra: Extra,
  ): Promise<CallToolResult> {
    const token = extra._meta?.progressToken;
    let progress = 0;
    const announce = (message: string) =>
      token === undefined
        ? undefined
        : extra
            .sendNotification({
              method: 'notifications/progress',
              params: { progressToken: token, progress: ++progress, message },
            })
            .catch(() => undefined);
    try {
      const { result, notes } = await s.run(
        {
          code: args.code,
          ...(args.timeoutSeconds !== undefined ? { timeoutSeconds: args.timeoutSeconds } : {}),
          ...(args.files !== undefined ? { files: args.files } : {}),
        },
        stop,
        (id) => void announce(`running in session ${id}`),
      );
      return sessionRunContent(result, notes);
    } catch (err) {
      if (isInvalidInput(err))
        return errorContent(`Invalid input: ${err.message} (limit: ${err.limit}). Nothing was run.`);
      if (stop.aborted)
        return errorContent(`Cancelled: the session was closed to stop the program (${String(stop.reason)}).`);
      log(`session run: ${errorMessage(err)}`);
      return errorContent(`run_code failed: ${errorMessage(err)}`);
    }
  }

  async function run(args: RunCodeArgs, executionId: string, stop: AbortSignal, extra: Extra): Promise<CallToolResult> {
    const input: ExecutionInput = {
      ...(options.network ? { network: options.network } : {}),
      code: args.code,
      language: args.language,
      ...(args.timeoutSeconds !== undefined ? { timeoutSeconds: args.timeoutSeconds } : {}),
      ...(args.files !== undefined ? { files: args.files } : {}),
    };
    const token = extra._meta?.progressToken;
    const reporter =
      token === undefined
        ? undefined
        : new ProgressReporter({
            executionId,
            progressToken: token,
            send: (n) => extra.sendNotification(n),
            heartbeatMs: options.progressHeartbeatMs,
            log,
          });
    let neverStarts = false;
    let cancelling: Promise<void> | undefined;
    const onStop = (): void => {
      log(`execution ${executionId}: the call was cancelled (${String(stop.reason)}); cancelling the execution`);
      cancelling = cancelWhenStarted(client, executionId, () => neverStarts, log);
    };
    stop.addEventListener('abort', onStop, { once: true });
    try {
      const running = client.executeCode(input, {
        executionId,
        signal: stop,
        ...(reporter ? { onProgress: (p) => reporter.report(p) } : {}),
      });
      if (reporter && (await pendingAfterValidation(running)))
        reporter.report({ stage: 'queued', detail: 'submitted', attempt: 1 });
      return executionResultContent(await running);
    } catch (err) {
      if (isInvalidInput(err)) {
        neverStarts = true;
        return errorContent(`Invalid input: ${err.message} (limit: ${err.limit}). Nothing was run.`);
      }
      // After a cancellation the SDK sends no response: this is for the log only.
      if (stop.aborted)
        return errorContent(`Cancelled: execution ${executionId} was cancelled (${String(stop.reason)}).`);
      log(`execution ${executionId}: ${errorMessage(err)}`);
      return errorContent(`run_code failed (execution ${executionId}): ${errorMessage(err)}`);
    } finally {
      stop.removeEventListener('abort', onStop);
      await reporter?.close();
      if (cancelling) await cancelling;
    }
  }

  server.registerTool(
    RUN_CODE_TOOL,
    {
      title: 'Run code in a sandbox',
      description: sessions ? RUN_CODE_SESSION_DESCRIPTION : RUN_CODE_DESCRIPTION,
      inputSchema,
      annotations: {
        title: 'Run code in a sandbox',
        readOnlyHint: false,
        destructiveHint: false,
        idempotentHint: false,
      },
    },
    async (args, extra): Promise<CallToolResult> => {
      const executionId = newExecutionId();
      // Aborted by the MCP client's cancellation or the connection closing (extra.signal), or by the transport
      // (its client went away, the server is closing).
      const stop = new AbortController();
      const forward = (): void => stop.abort(extra.signal.reason);
      if (extra.signal.aborted) forward();
      else extra.signal.addEventListener('abort', forward, { once: true });
      const finished = calls?.add(extra.requestId, (reason) => stop.abort(reason));
      try {
        if (stop.signal.aborted) return errorContent('Cancelled before it started; nothing was run.');
        if (sessions && SESSION_LANGUAGES.includes(args.language))
          return await runInSession(sessionFor(args.language), args, stop.signal, extra);
        return await run(args, executionId, stop.signal, extra);
      } finally {
        extra.signal.removeEventListener('abort', forward);
        finished?.();
      }
    },
  );
  if (sessions)
    server.registerTool(
      RESET_SESSION_TOOL,
      {
        title: 'Reset the interpreter',
        description: `End this conversation's ${SESSION_TITLES} session: its variables, imports and files are gone, and the next run_code call starts a fresh interpreter.`,
        inputSchema: {},
        annotations: {
          title: 'Reset the interpreter',
          readOnlyHint: false,
          destructiveHint: true,
          idempotentHint: true,
        },
      },
      async (): Promise<CallToolResult> => {
        const ended = await closeSessions('reset_session');
        return {
          content: [
            {
              type: 'text',
              text: ended.length
                ? `${ended.map((id) => `Session ${id} closed`).join('; ')}; the next run_code call starts a fresh interpreter.`
                : 'No session was open; the next run_code call starts a fresh interpreter.',
            },
          ],
        };
      },
    );
  return server;
}

/** An McpServer that also closes its connection's session when it closes. */
class SandboxMcpServer extends McpServer {
  constructor(
    info: { name: string; version: string },
    private readonly onClose: () => Promise<unknown> | undefined,
  ) {
    super(info);
  }

  override async close(): Promise<void> {
    await super.close();
    await this.onClose();
  }
}

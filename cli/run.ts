/**
 * `durable-sandbox run`: runs one program and streams its output, with the execution's progress on stderr (a spinner
 * on a terminal, plain lines otherwise). The process exits with the program's exit code (cli/exit-codes.ts).
 */
import { displayFileName, displayText, droppedDisplaysNote, isBinaryType } from '../core/displays';
import { networkNotes } from '../core/egress';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  ExecutionWaitAbortedError,
  type ExecutionInput,
  type ExecutionResult,
  type InputFile,
  type ProgressUpdate,
  type SandboxClient,
} from '../client';
import { DEFAULT_LANGUAGE, languageChoices, languageNamed, languageOfFile } from '../core/languages';
import { EXIT } from './exit-codes';
import { ProgressView } from './progress-view';

export interface RunArgs {
  file?: string;
  code?: string;
  language?: string;
  timeout?: string;
  files: string[];
  env: string[];
  /** --allow-net: domains the program may reach through the egress gateway. */
  allowNet?: string[];
  memory?: string;
  cpu?: string;
  id?: string;
  json: boolean;
  /** Seconds to wait for the result before leaving it running. */
  wait?: string;
  saveFiles?: string;
  /** --save-displays: where each display's types are written (display-<n>.<ext>). */
  saveDisplays?: string;
  timeline: boolean;
}

export class UsageError extends Error {}

/** The input the command line describes. */
export function inputFrom(args: RunArgs): ExecutionInput {
  let code = args.code;
  let language = args.language;
  if (code === undefined) {
    if (!args.file) throw new UsageError('give a program: a FILE, - for stdin, or -e CODE');
    code = readFileSync(args.file === '-' ? 0 : args.file, 'utf8');
    if (!language && args.file !== '-') language = languageOfFile(args.file);
  }
  const named = language === undefined ? undefined : languageNamed(language);
  if (language !== undefined && !named) throw new UsageError(`--language: ${languageChoices()}, not "${language}"`);
  const files: InputFile[] = args.files.map((p) => ({
    name: path.basename(p),
    content: readFileSync(p).toString('base64'),
    encoding: 'base64',
  }));
  const env: Record<string, string> = {};
  for (const kv of args.env) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new UsageError(`--env takes NAME=VALUE, not "${kv}"`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const timeout = args.timeout === undefined ? undefined : Number(args.timeout);
  if (timeout !== undefined && !Number.isInteger(timeout))
    throw new UsageError(`--timeout takes whole seconds, not "${args.timeout}"`);
  return {
    code,
    language: named ?? DEFAULT_LANGUAGE,
    ...(timeout !== undefined ? { timeoutSeconds: timeout } : {}),
    ...(files.length ? { files } : {}),
    ...(Object.keys(env).length ? { env } : {}),
    ...(args.allowNet?.length ? { network: { allow: args.allowNet } } : {}),
    ...(args.memory || args.cpu
      ? { limits: { ...(args.memory ? { memory: args.memory } : {}), ...(args.cpu ? { cpu: args.cpu } : {}) } }
      : {}),
  };
}

/**
 * Shows a result's display data as a terminal can: the text form of each on stdout, after the program's output; with
 * `dir`, every type of each saved as display-<n>.<ext> there (named on stderr).
 */
export function showDisplays(r: Pick<ExecutionResult, 'displays' | 'displaysInfo'>, dir: string | undefined): void {
  const displays = r.displays ?? [];
  displays.forEach((d, i) => {
    const saved: string[] = [];
    if (dir) {
      mkdirSync(dir, { recursive: true });
      Object.entries(d).forEach(([type, content], k) => {
        const name = displayFileName(i, type, k);
        writeFileSync(path.join(dir, name), Buffer.from(content, isBinaryType(type) ? 'base64' : 'utf8'));
        saved.push(name);
      });
    }
    const text = displayText(d);
    process.stdout.write(text.endsWith('\n') || !text ? text : `${text}\n`);
    process.stderr.write(
      `  display ${i + 1} (${Object.keys(d).join(', ')})${saved.length ? ` -> ${saved.map((n) => path.join(dir!, n)).join(', ')}` : ''}\n`,
    );
  });
  const dropped = droppedDisplaysNote(r.displaysInfo);
  if (dropped) process.stderr.write(`  ${dropped}\n`);
}

/** Writes output files under `dir`; returns their names. */
export function saveOutputFiles(files: ExecutionResult['outputFiles'], dir: string): string[] {
  for (const f of files) {
    const target = path.join(dir, f.name);
    mkdirSync(path.dirname(target), { recursive: true });
    writeFileSync(target, Buffer.from(f.content, f.encoding === 'base64' ? 'base64' : 'utf8'));
  }
  return files.map((f) => f.name);
}

export function exitCodeOf(r: ExecutionResult): number {
  switch (r.status) {
    case 'succeeded':
    case 'failed':
      return r.exitCode ?? 1;
    case 'timed_out':
      return EXIT.timedOut;
    case 'oom_killed':
      return EXIT.oomKilled;
    case 'cancelled':
      return EXIT.cancelled;
    case 'infra_error':
    case 'sandbox_lost':
      return EXIT.infraError;
  }
}

function summary(r: ExecutionResult): string {
  const took = r.durationMs !== undefined ? ` in ${(r.durationMs / 1000).toFixed(2)} s` : '';
  const code = r.exitCode !== null ? ` (exit ${r.exitCode})` : '';
  const why = r.error ? `: ${r.error.reason}: ${r.error.message}` : '';
  return `${r.status}${code}${took}, ${r.sandbox} sandbox, execution ${r.executionId}${why}`;
}

/** What the program reached and was refused through the egress gateway, a line each (none without an allow-list). */
export function networkLines(r: Pick<ExecutionResult, 'network'>): string[] {
  const n = r.network;
  if (!n) return [];
  const lines = n.reached.map(
    (c) =>
      `  network: reached ${c.host}:${c.port} (sent ${c.sent} B, received ${c.received} B${c.reason ? `; ${c.reason}` : ''})`,
  );
  lines.push(...networkNotes(n, '--allow-net DOMAIN').map((l) => `  ${l.replace(/^\[|\]$/g, '')}`));
  return lines;
}

function timelineLines(r: ExecutionResult, full: { phase: string; at: number; attempt: number }[]): string[] {
  const start = full[0]?.at ?? 0;
  return full.map(
    (e) => `  +${String(e.at - start).padStart(6)} ms  ${e.phase}${r.attempts > 1 ? ` (attempt ${e.attempt})` : ''}`,
  );
}

export interface RunHooks {
  /** Called once the result is in (before the process ends). */
  onResult?: (r: ExecutionResult) => Promise<void>;
  /** Called (once) when the execution has been queued for a while: no worker took it. */
  onQueued?: () => void;
  /**
   * Whether this command's own worker serves the execution. Then nothing may outlive the command: a second Ctrl-C
   * keeps waiting for the cancellation's cleanup, and --wait running out cancels the execution instead of leaving
   * it to a worker that is about to go away.
   */
  ownWorker?: () => boolean;
}

/** How long an execution may stay queued before onQueued is called. */
export const QUEUED_FOR_MS = 5000;

/** A fresh execution id for the command line. */
export function newExecutionId(): string {
  return `cli-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs the program and returns the process's exit code. Ctrl-C (or SIGTERM, SIGHUP) cancels the execution and waits
 * for its result, `cancelled` (exit 130). A second Ctrl-C stops waiting and leaves the cancellation to the workers,
 * unless this command's own worker runs it: then the command waits for the cleanup whatever happens, so that nothing
 * is left behind. `--wait` running out leaves the execution running (exit 75), or with the command's own worker,
 * cancels it (exit 130) and says why.
 */
export async function run(client: SandboxClient, args: RunArgs, options: RunHooks = {}): Promise<number> {
  const input = inputFrom(args);
  const waitMs = args.wait === undefined ? undefined : Number(args.wait) * 1000;
  if (waitMs !== undefined && !(waitMs >= 0)) throw new UsageError(`--wait takes seconds, not "${args.wait}"`);
  const view = args.json ? undefined : new ProgressView();
  const say = (text: string): void => {
    if (view) view.line(`[durable-sandbox] ${text}`);
    else process.stderr.write(`[durable-sandbox] ${text}\n`);
  };
  const ownWorker = (): boolean => options.ownWorker?.() ?? false;
  const id = args.id ?? newExecutionId();
  const stop = new AbortController();
  let stopped: 'aborted' | 'timeout' | undefined;
  let settled = false;
  let cancelling = false;
  const cancel = (why: string): void => {
    if (cancelling) return;
    cancelling = true;
    say(
      `${why}: cancelling ${id}` +
        (ownWorker()
          ? " (this command's worker runs it: the command ends once its sandbox is gone)"
          : ' (Ctrl-C again to stop waiting)'),
    );
    void cancelUntilStarted(client, id, () => settled);
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!cancelling) cancel(signal === 'SIGINT' ? 'Ctrl-C' : signal);
    else if (ownWorker()) say(`still cancelling ${id}: waiting for its cleanup, so that nothing is left behind`);
    else {
      stopped = 'aborted';
      stop.abort();
    }
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  const waitTimer =
    waitMs === undefined
      ? undefined
      : setTimeout(() => {
          if (ownWorker())
            cancel(
              `--wait: ${args.wait} s passed, and this command's own worker is the one running it, so rather than ` +
                'leave it behind with nobody to finish it (start a worker, e.g. `npm run worker`, for --wait to leave ' +
                'executions running)',
            );
          else {
            stopped = 'timeout';
            stop.abort();
          }
        }, waitMs);
  try {
    const write = (stream: NodeJS.WriteStream) => (text: string) => {
      if (stream.isTTY) view?.beforeOutput();
      stream.write(text);
      if (stream.isTTY) view?.afterOutput(text);
    };
    let queuedSince: number | undefined;
    let queuedCalled = false;
    const onProgress = (p: ProgressUpdate): void => {
      view?.update(p);
      if (p.stage !== 'queued') return;
      queuedSince ??= Date.now();
      if (!queuedCalled && options.onQueued && Date.now() - queuedSince >= QUEUED_FOR_MS) {
        queuedCalled = true;
        options.onQueued();
      }
    };
    const result = await client
      .executeCode(input, {
        executionId: id,
        signal: stop.signal,
        onProgress,
        ...(args.json ? {} : { onStdout: write(process.stdout), onStderr: write(process.stderr) }),
      })
      .finally(() => (settled = true));
    clearTimeout(waitTimer);
    if (args.saveFiles) saveOutputFiles(result.outputFiles, args.saveFiles);
    if (args.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else {
      const ok = result.status === 'succeeded';
      view?.done(summary(result), ok);
      showDisplays(result, args.saveDisplays);
      for (const line of networkLines(result)) process.stderr.write(`${line}\n`);
      for (const f of result.outputFiles) {
        const where = args.saveFiles ? ` -> ${path.join(args.saveFiles, f.name)}` : '';
        process.stderr.write(
          `  output file ${f.name} (${f.sizeBytes} bytes, ${f.mimeType}${f.truncated ? ', truncated' : ''})${where}\n`,
        );
      }
    }
    await options.onResult?.(result);
    if (args.timeline && !args.json) {
      const full = await client.timeline(result.executionId).catch(() => result.timeline);
      process.stderr.write(`timeline:\n${timelineLines(result, full).join('\n')}\n`);
    }
    return exitCodeOf(result);
  } catch (err) {
    if (err instanceof ExecutionWaitAbortedError) {
      const after = stopped === 'timeout' ? ` after ${args.wait} s` : '';
      view?.done(
        `stopped waiting${after}: execution ${err.executionId} is ${err.state}; \`durable-sandbox status ${err.executionId}\` shows it`,
        false,
      );
      return EXIT.stoppedWaiting;
    }
    throw err;
  } finally {
    clearTimeout(waitTimer);
    for (const s of SIGNALS) process.off(s, onSignal);
  }
}

/**
 * Asks for the execution's cancellation, again while it is not started yet (a Ctrl-C in the first instant can come
 * before the start has reached Temporal), until it is asked or the result is in.
 */
async function cancelUntilStarted(client: SandboxClient, executionId: string, done: () => boolean): Promise<void> {
  for (let tries = 0; tries < 50 && !done(); tries++) {
    try {
      await client.cancelExecution(executionId);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/**
 * `durable-sandbox run`: runs one program and streams its output, with the execution's progress on stderr (a spinner
 * on a terminal, plain lines otherwise). The process exits with the program's exit code (cli/exit-codes.ts).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createSpinner } from 'nanospinner';
import {
  ExecutionWaitAbortedError,
  type ExecutionInput,
  type ExecutionResult,
  type InputFile,
  type ProgressUpdate,
  type SandboxClient,
} from '../client';
import { isLanguage } from '../core/languages';
import { EXIT } from './exit-codes';

export interface RunArgs {
  file?: string;
  code?: string;
  language?: string;
  timeout?: string;
  files: string[];
  env: string[];
  memory?: string;
  cpu?: string;
  id?: string;
  json: boolean;
  /** Seconds to wait for the result before leaving it running. */
  wait?: string;
  saveFiles?: string;
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
    if (!language && args.file !== '-') language = args.file.endsWith('.sh') ? 'bash' : 'python';
  }
  if (language !== undefined && !isLanguage(language))
    throw new UsageError(`--language: python or bash, not "${language}"`);
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
    language: language ?? 'python',
    ...(timeout !== undefined ? { timeoutSeconds: timeout } : {}),
    ...(files.length ? { files } : {}),
    ...(Object.keys(env).length ? { env } : {}),
    ...(args.memory || args.cpu
      ? { limits: { ...(args.memory ? { memory: args.memory } : {}), ...(args.cpu ? { cpu: args.cpu } : {}) } }
      : {}),
  };
}

/** Progress on stderr: a spinner on a terminal, one plain line per change otherwise. */
class ProgressView {
  private readonly spinner = process.stderr.isTTY ? createSpinner('', { stream: process.stderr }) : undefined;
  private active = false;
  private last = { stage: '', at: 0 };

  update(p: ProgressUpdate): void {
    const text = `${p.stage}: ${p.detail}${p.sandbox ? ` (${p.sandbox})` : ''}${p.attempt > 1 ? `, attempt ${p.attempt}` : ''}`;
    if (!this.spinner) {
      // Plain lines: a new one when the stage changes, and every 10 s while it stays (a queue wait counts up).
      if (p.stage === this.last.stage && Date.now() - this.last.at < 10_000 && p.stage === 'queued') return;
      this.last = { stage: p.stage, at: Date.now() };
      process.stderr.write(`[durable-sandbox] ${text}\n`);
    } else if (!this.active) {
      this.active = true;
      this.spinner.start({ text });
    } else {
      this.spinner.update({ text });
    }
  }

  /** Output is about to be written: the spinner steps aside for good. */
  pause(): void {
    if (this.spinner && this.active) this.spinner.clear();
    this.active = false;
  }

  done(text: string, ok: boolean): void {
    if (this.spinner) {
      if (!this.active) this.spinner.start({ text });
      if (ok) this.spinner.success({ text });
      else this.spinner.error({ text });
    } else {
      process.stderr.write(`[durable-sandbox] ${text}\n`);
    }
  }
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
      return EXIT.infraError;
  }
}

function summary(r: ExecutionResult): string {
  const took = r.durationMs !== undefined ? ` in ${(r.durationMs / 1000).toFixed(2)} s` : '';
  const code = r.exitCode !== null ? ` (exit ${r.exitCode})` : '';
  const why = r.error ? `: ${r.error.reason}: ${r.error.message}` : '';
  return `${r.status}${code}${took}, ${r.sandbox} sandbox, execution ${r.executionId}${why}`;
}

function timelineLines(r: ExecutionResult, full: { phase: string; at: number; attempt: number }[]): string[] {
  const start = full[0]?.at ?? 0;
  return full.map(
    (e) => `  +${String(e.at - start).padStart(6)} ms  ${e.phase}${r.attempts > 1 ? ` (attempt ${e.attempt})` : ''}`,
  );
}

/**
 * Runs the program and returns the process's exit code. Ctrl-C once cancels the execution (its result, 'cancelled',
 * still comes back); twice stops waiting and leaves it to finish on its own.
 */
export interface RunHooks {
  /** Called once the result is in (before the process ends). */
  onResult?: (r: ExecutionResult) => Promise<void>;
  /** Called (once) when the execution has been queued for a while: no worker took it. */
  onQueued?: () => void;
}

/** How long an execution may stay queued before onQueued is called. */
const QUEUED_FOR_MS = 5000;

export async function run(client: SandboxClient, args: RunArgs, options: RunHooks = {}): Promise<number> {
  const input = inputFrom(args);
  const view = args.json ? undefined : new ProgressView();
  const executionId = args.id;
  const stop = new AbortController();
  let cancelling: string | undefined;
  let seenId: string | undefined = executionId;
  const onSigint = (): void => {
    if (!cancelling && seenId) {
      cancelling = seenId;
      process.stderr.write(`\n[durable-sandbox] cancelling ${seenId} (Ctrl-C again to stop waiting)\n`);
      void client.cancelExecution(seenId).catch(() => undefined);
    } else {
      stop.abort();
    }
  };
  process.on('SIGINT', onSigint);
  try {
    const id = executionId ?? `cli-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`;
    seenId = id;
    const write = (stream: NodeJS.WriteStream) => (text: string) => {
      view?.pause();
      stream.write(text);
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
    const result = await client.executeCode(input, {
      executionId: id,
      signal: stop.signal,
      ...(args.wait !== undefined ? { waitTimeoutMs: Number(args.wait) * 1000 } : {}),
      onProgress,
      ...(args.json ? {} : { onStdout: write(process.stdout), onStderr: write(process.stderr) }),
    });
    if (args.saveFiles && result.outputFiles.length) {
      mkdirSync(args.saveFiles, { recursive: true });
      for (const f of result.outputFiles) {
        const target = path.join(args.saveFiles, f.name);
        mkdirSync(path.dirname(target), { recursive: true });
        writeFileSync(target, Buffer.from(f.content, f.encoding === 'base64' ? 'base64' : 'utf8'));
      }
    }
    if (args.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else {
      const ok = result.status === 'succeeded';
      view?.done(summary(result), ok);
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
      view?.done(
        `stopped waiting: execution ${err.executionId} is ${err.state}; \`durable-sandbox status ${err.executionId}\` shows it`,
        false,
      );
      return EXIT.stoppedWaiting;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

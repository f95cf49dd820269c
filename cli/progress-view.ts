/**
 * The run command's progress on stderr: a spinner line on a terminal, one plain line per change otherwise.
 *
 * The spinner is drawn here rather than by a spinner package because of two things such packages do that this
 * command cannot have: they exit the process on SIGINT (the command's Ctrl-C must cancel the execution and wait for
 * its cleanup first), and they decide whether to animate by looking at stdout (progress goes to stderr, and stdout
 * may well be a file). The spinner never shares a line with the program's output: the line is cleared before any
 * output is written, and once output flows the spinner is not drawn again.
 */
import type { ProgressUpdate } from '../client';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const FRAME_MS = 80;

export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): boolean;
}

export function describeProgress(p: ProgressUpdate): string {
  return `${p.stage}: ${p.detail}${p.sandbox ? ` (${p.sandbox})` : ''}${p.attempt > 1 ? `, attempt ${p.attempt}` : ''}`;
}

export class ProgressView {
  private readonly animate: boolean;
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;
  private text = '';
  /** The spinner's line is on screen (and must be cleared before anything else is written). */
  private drawn = false;
  /** The program's output has started: no spinner from now on. */
  private outputSeen = false;
  /** The terminal's cursor is at the start of a line (what was last written ended with a newline). */
  private atLineStart = true;
  private last = { stage: '', at: 0 };

  constructor(
    private readonly stream: ProgressStream = process.stderr,
    env: Record<string, string | undefined> = process.env,
  ) {
    this.animate = !!stream.isTTY && env.TERM !== 'dumb';
  }

  update(p: ProgressUpdate): void {
    const text = describeProgress(p);
    if (!this.animate) {
      // Plain lines: a new one when the stage changes, and every 10 s while it stays (a queue wait counts up).
      if (p.stage === this.last.stage && Date.now() - this.last.at < 10_000 && p.stage === 'queued') return;
      this.last = { stage: p.stage, at: Date.now() };
      this.line(`[durable-sandbox] ${text}`);
      return;
    }
    this.text = text;
    if (this.outputSeen) return;
    if (!this.timer) {
      this.timer = setInterval(() => this.draw(), FRAME_MS);
      this.timer.unref();
    }
    this.draw();
  }

  /** The program's output is about to be written to this terminal: the spinner steps aside, for good. */
  beforeOutput(): void {
    this.outputSeen = true;
    this.stopSpinner();
  }

  /** The program's output was written: whether it ended a line (so a message after it starts on a new one). */
  afterOutput(text: string): void {
    if (text.length > 0) this.atLineStart = text.endsWith('\n');
  }

  /** A line of this command's own (cancelling, cleaning up), never glued to the spinner or the program's output. */
  line(text: string): void {
    this.stopSpinner();
    this.stream.write(`${this.atLineStart ? '' : '\n'}${text}\n`);
    this.atLineStart = true;
    if (this.animate && !this.outputSeen && this.text) {
      this.timer ??= setInterval(() => this.draw(), FRAME_MS);
      this.timer.unref();
    }
  }

  done(text: string, ok: boolean): void {
    this.outputSeen = true;
    this.stopSpinner();
    const mark = this.animate ? (ok ? '\x1b[32m✔\x1b[39m ' : '\x1b[31m✖\x1b[39m ') : '[durable-sandbox] ';
    this.stream.write(`${this.atLineStart ? '' : '\n'}${mark}${text}\n`);
    this.atLineStart = true;
  }

  private draw(): void {
    const width = Math.max(20, (this.stream.columns ?? 80) - 1);
    const shown = `${FRAMES[this.frame++ % FRAMES.length]} ${this.text}`;
    // One terminal line, never wrapped: a wrapped line could not be cleared with one escape.
    this.stream.write(`\r\x1b[2K${shown.length > width ? `${shown.slice(0, width - 1)}…` : shown}`);
    this.drawn = true;
  }

  private stopSpinner(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }
}

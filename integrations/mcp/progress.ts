/**
 * MCP progress for run_code: the client's progress reports (SandboxClient.executeCode's `onProgress`) as
 * `notifications/progress` on the caller's progressToken, one per phase, in order, with the execution id in every
 * message (so a caller can look the execution up, or find it in the Temporal UI, while it runs). While nothing
 * changes, the last report is repeated every `heartbeatMs`, so clients that reset their request timeout on progress
 * keep waiting for long programs.
 *
 * This is the only place that knows the shape of the client's progress reports; it accepts any stage name, so a
 * client that grows new stages needs no change here.
 */
import type { ServerNotification } from '@modelcontextprotocol/sdk/types.js';

/** A progress report as SandboxClient sends it (kept loose on purpose; see above). */
export interface StageReport {
  stage: string;
  detail?: string;
  attempt?: number;
  sandbox?: string;
}

/** Stages in the order they happen within one attempt; an unknown stage is never treated as going back. */
const RANK: Record<string, number> = { queued: 0, starting: 1, running: 2, finishing: 3 };

export interface ProgressReporterOptions {
  executionId: string;
  progressToken: string | number;
  send: (n: ServerNotification) => Promise<void>;
  /** Repeat the last report after this long without a change (0: never). Default 15 s. */
  heartbeatMs?: number;
  log?: (msg: string) => void;
}

export class ProgressReporter {
  private count = 0;
  private last?: { rank: number; attempt: number; key: string; report: StageReport; at: number };
  private sending: Promise<void> = Promise.resolve();
  private readonly timer?: NodeJS.Timeout;
  private closed = false;
  private readonly startedAt = Date.now();

  constructor(private readonly options: ProgressReporterOptions) {
    const every = options.heartbeatMs ?? 15_000;
    if (every > 0) {
      this.timer = setInterval(() => this.heartbeat(every), Math.min(every, 5_000));
      this.timer.unref();
    }
  }

  /** Sends a report unless it repeats the last one or goes back to an earlier stage of the same attempt. */
  report(r: StageReport): void {
    if (this.closed) return;
    const attempt = r.attempt ?? this.last?.attempt ?? 1;
    const rank = RANK[r.stage] ?? this.last?.rank ?? 0;
    const key = `${r.stage}|${r.detail ?? ''}|${attempt}|${r.sandbox ?? ''}`;
    if (this.last) {
      if (key === this.last.key) return;
      if (attempt < this.last.attempt || (attempt === this.last.attempt && rank < this.last.rank)) return;
    }
    this.last = { rank, attempt, key, report: { ...r, attempt }, at: Date.now() };
    this.emit(this.message(r, attempt));
  }

  private heartbeat(every: number): void {
    const last = this.last;
    if (this.closed || !last || Date.now() - last.at < every) return;
    last.at = Date.now();
    const waited = Math.round((Date.now() - this.startedAt) / 1000);
    this.emit(`${this.message(last.report, last.attempt)} (still ${last.report.stage}, ${waited} s since the call)`);
  }

  private message(r: StageReport, attempt: number): string {
    const where = [`execution ${this.options.executionId}`, `attempt ${attempt}`];
    if (r.sandbox) where.push(`${r.sandbox} sandbox`);
    return `${r.stage}${r.detail ? `: ${r.detail}` : ''} [${where.join(', ')}]`;
  }

  private emit(message: string): void {
    const progress = ++this.count;
    const { progressToken, send, log } = this.options;
    // One after another, so the client sees them in order.
    this.sending = this.sending.then(() =>
      send({ method: 'notifications/progress', params: { progressToken, progress, message } }).catch((err: unknown) =>
        log?.(`progress notification not sent: ${String(err)}`),
      ),
    );
  }

  /** Stops reporting; resolves once what was already reported has been handed to the transport. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.sending;
  }
}

/** Regex for the execution id in a progress message (for callers that want it before the result). */
export const EXECUTION_ID_IN_PROGRESS = /\[execution ([A-Za-z0-9][A-Za-z0-9._:@/-]*),/;

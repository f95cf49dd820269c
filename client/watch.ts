/**
 * What a client sees of a running execution without a worker's help: the execution's description from Temporal,
 * polled while a caller waits. It carries the run step's heartbeat (the newest output of each stream and where the
 * pod stands, see activities/attempt-watch.ts), from which live output goes to the caller's callbacks, in order and
 * once, and progress reports go out when the stage changes. The final result supplies whatever output the heartbeats
 * did not carry. Works from any client that attaches.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { RunHeartbeat } from '../core/attempt';
import type { SandboxKind } from '../core/sandbox';
import { unseen } from '../core/output';
import type { ExecutionResult, LiveOutput, MimeBundle, OutputTail } from '../core/types';

export interface OutputChunkInfo {
  /** The attempt the text belongs to: when the infrastructure lost a sandbox, the next attempt's output starts over. */
  attempt: number;
}

/** Where a running execution stands, for progress reports. */
export interface ProgressUpdate {
  /** queued: no worker has taken it yet; starting: getting a sandbox; running: the program runs; finishing: cleanup. */
  stage: 'queued' | 'starting' | 'running' | 'finishing';
  detail: string;
  attempt: number;
  sandbox?: SandboxKind;
}

export interface WatchCallbacks {
  onStdout?: (text: string, info: OutputChunkInfo) => void;
  onStderr?: (text: string, info: OutputChunkInfo) => void;
  /** Each display (a MIME bundle: a figure, a table, a rich value) once, in order, as it is shown. */
  onDisplay?: (bundle: MimeBundle, info: OutputChunkInfo & { index: number }) => void;
  onProgress?: (update: ProgressUpdate) => void;
}

/** Step names whose heartbeats carry a RunHeartbeat. */
export const RUN_STEP = 'runSandbox';

type Pending = {
  activityType?: { name?: string | null } | null;
  heartbeatDetails?: { payloads?: unknown[] | null } | null;
};
type Raw = {
  pendingActivities?: Pending[] | null;
  workflowExecutionInfo?: { historyLength?: unknown } | null;
};

/** The run step's newest heartbeat, from a workflow description, when it is running. */
export function runHeartbeat(raw: Raw): RunHeartbeat | undefined {
  const step = raw.pendingActivities?.find((a) => a.activityType?.name === RUN_STEP);
  const payload = step?.heartbeatDetails?.payloads?.[0];
  if (!payload) return undefined;
  return defaultPayloadConverter.fromPayload<RunHeartbeat>(payload);
}

/** The stage of a running execution from its description. */
export function progressOf(raw: Raw): ProgressUpdate {
  const names = (raw.pendingActivities ?? []).map((a) => a.activityType?.name);
  const hb = runHeartbeat(raw);
  if (hb) {
    const p = hb.progress;
    const base = { attempt: hb.attempt, ...(hb.sandbox ? { sandbox: hb.sandbox } : {}) };
    if (p.containerStartedAt !== undefined || (hb.output && (hb.output.stdout.end > 0 || hb.output.stderr.end > 0))) {
      return { ...base, stage: 'running', detail: p.podName ? `running in pod ${p.podName}` : 'running' };
    }
    return {
      ...base,
      stage: 'starting',
      detail: p.waitingFor ?? (p.podName ? `starting pod ${p.podName}` : 'getting a sandbox'),
    };
  }
  if (names.includes('cleanup') || names.includes('collectOutput'))
    return { stage: 'finishing', detail: 'cleaning up', attempt: 1 };
  if (names.includes(RUN_STEP)) return { stage: 'starting', detail: 'getting a sandbox', attempt: 1 };
  // Started, and its first workflow task never handled: no worker has taken it.
  if (Number(raw.workflowExecutionInfo?.historyLength ?? 0) <= 2)
    return { stage: 'queued', detail: 'waiting for a worker', attempt: 1 };
  return { stage: 'starting', detail: 'starting', attempt: 1 };
}

const STAGES: ProgressUpdate['stage'][] = ['queued', 'starting', 'running', 'finishing'];

class Cursor {
  attempt = 1;
  delivered = 0;
  constructor(private readonly emit: ((text: string, info: OutputChunkInfo) => void) | undefined) {}

  offer(attempt: number, tail: OutputTail | undefined): void {
    if (attempt > this.attempt) {
      this.attempt = attempt;
      this.delivered = 0;
    }
    if (attempt < this.attempt) return;
    this.send(unseen(tail, this.delivered));
  }

  finish(result: ExecutionResult, text: string): void {
    this.offer(result.attempts, undefined);
    this.rest(text);
  }

  /** Delivers what the callbacks have not had of `text` (the whole output of the current attempt). */
  rest(text: string): void {
    this.send(text.slice(this.delivered));
  }

  private send(text: string): void {
    if (!text) return;
    this.delivered += text.length;
    this.emit?.(text, { attempt: this.attempt });
  }
}

/** Displays delivered to a callback: each once, in order; what live output skipped comes from the result. */
class DisplayCursor {
  attempt = 1;
  delivered = 0;
  constructor(private readonly emit: WatchCallbacks['onDisplay']) {}

  offer(attempt: number, live: LiveOutput['displays']): void {
    if (!this.emit) return;
    if (attempt > this.attempt) {
      this.attempt = attempt;
      this.delivered = 0;
    }
    if (attempt < this.attempt || !live) return;
    for (const d of live.recent) if (d.index === this.delivered) this.send(d.bundle);
  }

  rest(displays: MimeBundle[] | undefined, attempt = this.attempt): void {
    if (attempt > this.attempt) {
      this.attempt = attempt;
      this.delivered = 0;
    }
    for (const d of (displays ?? []).slice(this.delivered)) this.send(d);
  }

  private send(bundle: MimeBundle): void {
    const index = this.delivered++;
    this.emit?.(bundle, { attempt: this.attempt, index });
  }
}

type Description = Awaited<ReturnType<WorkflowHandle['describe']>>;

/** Polls a workflow's description every `intervalMs` until stopped, handing each one to `observe`. */
abstract class DescriptionPoller {
  private stopped = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly handle: Pick<WorkflowHandle, 'describe'>,
    private readonly intervalMs: number,
  ) {}

  /** Called once the subclass is ready for descriptions. */
  protected start(): void {
    this.loop = this.poll();
  }

  protected abstract observe(description: Description): Promise<void> | void;

  private async poll(): Promise<void> {
    while (!this.stopped) {
      try {
        const description = await this.handle.describe();
        if (!this.stopped) await this.observe(description);
      } catch {
        // Not started yet, or Temporal briefly unreachable: the next poll tries again.
      }
      await new Promise((r) => setTimeout(r, this.intervalMs));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/** Polls an execution's description until stopped; `finish` delivers the rest of the output from the result. */
export class ExecutionWatcher extends DescriptionPoller {
  private readonly out: Cursor;
  private readonly err: Cursor;
  private readonly shown: DisplayCursor;
  private lastProgress = '';
  private lastRank = 0;

  constructor(
    handle: Pick<WorkflowHandle, 'describe'>,
    private readonly callbacks: WatchCallbacks,
    /** Says more of a queued execution: who polls its task queue, how long it waited. */
    private readonly queued?: (waitedMs: number) => Promise<string>,
    intervalMs = 200,
  ) {
    super(handle, intervalMs);
    this.out = new Cursor(callbacks.onStdout);
    this.err = new Cursor(callbacks.onStderr);
    this.shown = new DisplayCursor(callbacks.onDisplay);
    this.start();
  }

  protected async observe({ raw, status, startTime }: Description): Promise<void> {
    if (status.name === 'RUNNING') await this.observeRunning(raw, startTime);
  }

  private async observeRunning(raw: Raw, startTime: Date): Promise<void> {
    const hb = runHeartbeat(raw);
    if (hb?.output) {
      this.out.offer(hb.attempt, hb.output.stdout);
      this.err.offer(hb.attempt, hb.output.stderr);
      this.shown.offer(hb.attempt, hb.output.displays);
    }
    if (this.callbacks.onProgress) {
      const p = progressOf(raw);
      // Stages only move forward within an attempt (between two steps the description shows neither).
      const rank = p.attempt * 10 + STAGES.indexOf(p.stage);
      if (rank < this.lastRank) return;
      this.lastRank = rank;
      if (p.stage === 'queued' && this.queued)
        p.detail = await this.queued(Date.now() - startTime.getTime()).catch(() => p.detail);
      const key = `${p.stage}|${p.detail}|${p.attempt}`;
      if (key !== this.lastProgress) {
        this.lastProgress = key;
        this.callbacks.onProgress(p);
      }
    }
  }

  /** Stops polling and delivers whatever the callbacks have not had yet of the final result. */
  async finish(result: ExecutionResult): Promise<void> {
    await this.stop();
    this.out.finish(result, result.stdout);
    this.err.finish(result, result.stderr);
    this.shown.rest(result.displays, result.attempts);
  }
}

/** The step that runs a session's run, whose heartbeats carry the run's id and its newest output. */
export const SESSION_RUN_STEP = 'runInSession';

/** A session run's newest output, from the session's description, when its step runs (and is that run's). */
export function sessionRunOutput(raw: Raw, runId: string): LiveOutput | undefined {
  for (const step of raw.pendingActivities ?? []) {
    if (step.activityType?.name !== SESSION_RUN_STEP) continue;
    const payload = step.heartbeatDetails?.payloads?.[0];
    if (!payload) continue;
    const hb = defaultPayloadConverter.fromPayload<{ runId?: string; output?: LiveOutput }>(payload);
    if (hb.runId === runId) return hb.output;
  }
  return undefined;
}

/**
 * Follows one session run's live output (by its run id) while a caller waits: the session's description is polled,
 * and what its run step's heartbeats carry goes to the callbacks, in order and once; `finish` delivers the rest from
 * the result. The earlier runs a restore replays are not this run's: their output never reaches the callbacks.
 */
export class SessionRunWatcher extends DescriptionPoller {
  private readonly out: Cursor;
  private readonly err: Cursor;
  private readonly shown: DisplayCursor;

  constructor(
    handle: Pick<WorkflowHandle, 'describe'>,
    private readonly runId: string,
    callbacks: Pick<WatchCallbacks, 'onStdout' | 'onStderr' | 'onDisplay'>,
    intervalMs = 200,
  ) {
    super(handle, intervalMs);
    this.out = new Cursor(callbacks.onStdout);
    this.err = new Cursor(callbacks.onStderr);
    this.shown = new DisplayCursor(callbacks.onDisplay);
    this.start();
  }

  protected observe({ raw }: Description): void {
    const output = sessionRunOutput(raw, this.runId);
    if (output) {
      this.out.offer(1, output.stdout);
      this.err.offer(1, output.stderr);
      this.shown.offer(1, output.displays);
    }
  }

  /** Stops polling and delivers whatever the callbacks have not had yet of the run's result. */
  async finish(result: Pick<ExecutionResult, 'stdout' | 'stderr' | 'displays'>): Promise<void> {
    await this.stop();
    this.out.rest(result.stdout);
    this.err.rest(result.stderr);
    this.shown.rest(result.displays);
  }
}

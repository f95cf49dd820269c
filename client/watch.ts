/**
 * Live output for a client: reads the run step's heartbeat (the newest output of each stream, see
 * activities/attempt-watch.ts) from the execution's description while it runs, and hands each new piece of text to
 * the caller's callbacks, in order and once; the final result supplies whatever the heartbeats did not carry.
 * Works from any client that attaches, since it only reads what Temporal holds.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { RunHeartbeat } from '../core/attempt';
import { unseen } from '../core/output';
import type { ExecutionResult, OutputTail } from '../core/types';

export interface OutputChunkInfo {
  /** The attempt the text belongs to: when the infrastructure lost a sandbox, the next attempt's output starts over. */
  attempt: number;
}

export interface OutputCallbacks {
  onStdout?: (text: string, info: OutputChunkInfo) => void;
  onStderr?: (text: string, info: OutputChunkInfo) => void;
}

/** Step names whose heartbeats carry a RunHeartbeat. */
export const RUN_STEP = 'runSandbox';

/** The run step's newest heartbeat, from a workflow description, when it is running. */
export function runHeartbeat(raw: { pendingActivities?: unknown[] | null }): RunHeartbeat | undefined {
  type Pending = { activityType?: { name?: string | null } | null; heartbeatDetails?: { payloads?: unknown[] | null } | null };
  const step = (raw.pendingActivities as Pending[] | null | undefined)?.find((a) => a.activityType?.name === RUN_STEP);
  const payload = step?.heartbeatDetails?.payloads?.[0];
  if (!payload) return undefined;
  return defaultPayloadConverter.fromPayload(payload as Parameters<typeof defaultPayloadConverter.fromPayload>[0]) as RunHeartbeat;
}

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
    this.send(text.slice(this.delivered));
  }

  private send(text: string): void {
    if (!text) return;
    this.delivered += text.length;
    this.emit?.(text, { attempt: this.attempt });
  }
}

/** Polls an execution's live output until stopped; `finish` delivers the rest from the result. */
export class LiveOutputFollower {
  private readonly out: Cursor;
  private readonly err: Cursor;
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(
    private readonly handle: Pick<WorkflowHandle, 'describe'>,
    callbacks: OutputCallbacks,
    private readonly intervalMs = 200,
  ) {
    this.out = new Cursor(callbacks.onStdout);
    this.err = new Cursor(callbacks.onStderr);
    this.loop = this.poll();
  }

  private async poll(): Promise<void> {
    while (!this.stopped) {
      try {
        const { raw } = await this.handle.describe();
        const hb = runHeartbeat(raw);
        if (hb?.output && !this.stopped) {
          this.out.offer(hb.attempt, hb.output.stdout);
          this.err.offer(hb.attempt, hb.output.stderr);
        }
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

  /** Stops polling and delivers whatever the callbacks have not had yet of the final result. */
  async finish(result: ExecutionResult): Promise<void> {
    await this.stop();
    this.out.finish(result, result.stdout);
    this.err.finish(result, result.stderr);
  }
}

/**
 * Watches one attempt to its end: the pod through a watch (attempt-pods.ts), and, when asked, the container's log
 * as it is written (log-stream.ts), parsed into capped stdout and stderr as it streams (core/output.ts). What to do
 * next is decided by core/watch.ts from what was seen; this file only does the looking and the acting.
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { AttemptSpec, RunHeartbeat } from '../core/attempt';
import type { PodProgress } from '../core/classify';
import { activeDeadlineSeconds, CONTAINER_NAME } from '../core/manifests';
import { resourceNames } from '../core/names';
import { capsOf, LauncherLogParser, logReadLimit, type ParsedOutput } from '../core/output';
import { sandboxTraits, type SandboxKind } from '../core/sandbox';
import {
  DEADLINE_GRACE_MS,
  decideWatch,
  initialMemo,
  type AttemptEndNotCancelled,
  type LogState,
  type WatchFacts,
  type WatchMemo,
  type WatchSetup,
  type WatchStep,
} from '../core/watch';
import { AttemptPods } from './attempt-pods';
import { apiStatus, kubeCallOrMissing, kubeFailure, type Kube } from './kube';
import { openLogStream, type LogStream } from './log-stream';

export type { AttemptEndNotCancelled } from '../core/watch';

/** Full re-read of the Job and pods, in case a watch event was missed or the watch stalled. */
const RESYNC_MS = 10_000;
/**
 * Heartbeats go out at once when something changed (the worker's heartbeat throttle, LIVE_OUTPUT_INTERVAL, spaces
 * them) and at least this often otherwise, well inside the heartbeat timeout.
 */
const HEARTBEAT_MS = 3_000;

export interface WatchContext {
  heartbeat(details: RunHeartbeat): void;
  cancellationSignal: AbortSignal;
  /** Rejects with the activity's CancelledFailure once cancellation is requested. */
  cancelled: Promise<never>;
}

export interface WatchOutcome {
  end: AttemptEndNotCancelled;
  progress: PodProgress;
  /** The parsed log, when the watch followed it. */
  output?: ParsedOutput;
}

/** One decision, as the watch saw it: what a capture records (test/fixtures/watch) and the unit tests replay. */
export interface WatchRecord {
  facts: WatchFacts;
  step: WatchStep;
}

export class AttemptWatch {
  private memo: WatchMemo;
  private readonly setup: WatchSetup;
  private readonly kind: SandboxKind;
  private readonly pods: AttemptPods;
  private job: V1Job | undefined;
  private jobRead = false;
  private readonly limit: number;
  private parser: LauncherLogParser;
  private log: LogStream | undefined;
  private logState: LogState = 'none';
  private lastBeat = { at: 0, key: '' };
  private stopped = false;

  constructor(
    private readonly kube: Kube,
    private readonly spec: AttemptSpec,
    private readonly ctx: WatchContext,
    private readonly options: {
      followLog: boolean;
      /** What the attempt runs in (cold when not given: the steps of workflows/v1). */
      sandbox?: SandboxKind;
      /** The Job as its create returned it: spares a read until a decision needs a fresh one. */
      job?: V1Job;
      acquiredAt?: number;
      /** What an earlier try of the step had seen (its last heartbeat). */
      resumed?: PodProgress;
      /** Where a fresh attempt's watch starts: the resourceVersion of its Job's create or its pod's claim. */
      from?: { resourceVersion?: string; pod?: V1Pod };
      /** Called once when the pod is first seen waiting for a node (the warm pools then give way). */
      onWaitsForNode?: () => void;
      /** Called with every decision and what it was made from (captures for the unit tests of core/watch.ts). */
      record?: (entry: WatchRecord) => void;
    },
  ) {
    this.kind = options.sandbox ?? 'cold';
    this.setup = {
      executionId: spec.executionId,
      attempt: spec.attempt,
      timeoutSeconds: spec.request.timeoutSeconds,
      unschedulableGraceSeconds: spec.policy.unschedulableGraceSeconds,
      sandbox: sandboxTraits(this.kind),
      followLog: options.followLog,
      ...(options.acquiredAt !== undefined
        ? {
            giveUpAt: options.acquiredAt + activeDeadlineSeconds(spec.request, spec.policy) * 1000 + DEADLINE_GRACE_MS,
          }
        : {}),
    };
    this.job = options.job;
    this.memo = initialMemo(options.resumed);
    const { attemptSelector } = resourceNames(spec.executionId, spec.attempt);
    const progress = this.memo.progress;
    const known = progress.podName
      ? { name: progress.podName, finished: progress.containerFinishedAt !== undefined }
      : undefined;
    this.pods = new AttemptPods(kube, spec.policy.namespace, attemptSelector, known);
    this.limit = logReadLimit(capsOf(spec.policy));
    this.parser = this.newParser();
  }

  async run(): Promise<WatchOutcome> {
    const onCancel = (): void => this.pods.poke();
    this.ctx.cancellationSignal.addEventListener('abort', onCancel);
    try {
      // A fresh attempt starts its watch where its sandbox was made or claimed (one request); a resumed one lists first.
      await this.pods.start(this.options.resumed !== undefined, this.options.from);
      let lastResync = Date.now();
      for (;;) {
        if (this.stopped) throw new Error('the watch was stopped');
        if (this.ctx.cancellationSignal.aborted) await this.ctx.cancelled;
        if (!this.pods.isWatching) await this.pods.start(true);
        if (this.options.followLog) await this.follow();
        const step = await this.decide(Date.now());
        if (step.do === 'end') {
          if (step.stopPod) await this.stopPod(step.stopPod);
          this.beat(true);
          const progress = this.memo.progress;
          return { end: step.end, progress, ...(this.options.followLog ? { output: this.output() } : {}) };
        }
        this.beat(false);
        await this.pods.changed(step.wakeInMs);
        if (Date.now() - lastResync >= RESYNC_MS) {
          await this.pods.resync();
          await this.readOwner();
          lastResync = Date.now();
        }
      }
    } finally {
      this.ctx.cancellationSignal.removeEventListener('abort', onCancel);
      this.stop();
    }
  }

  /** Where the attempt stands as far as the watch has seen. */
  get progress(): PodProgress {
    return this.memo.progress;
  }

  stop(): void {
    this.stopped = true;
    this.pods.stop();
    this.log?.abort();
    this.pods.poke();
  }

  /** Asks core/watch.ts what to do, doing the reads it asks for first, until it ends the attempt or waits. */
  private async decide(now: number): Promise<Extract<WatchStep, { do: 'end' | 'wait' }>> {
    for (;;) {
      const facts = this.facts(now);
      const decision = decideWatch(this.setup, this.memo, facts);
      this.memo = decision.memo;
      this.options.record?.({ facts, step: decision.step });
      if (decision.waitsForNode) this.options.onWaitsForNode?.();
      const step = decision.step;
      if (step.do === 'read-owner') await this.readOwner();
      else if (step.do === 'refresh') {
        // The last look before a verdict is the apiserver's own, never a cache's.
        await this.pods.resync(true);
        await this.readOwner();
      } else return step;
    }
  }

  private facts(now: number): WatchFacts {
    return {
      now,
      pod: this.pods.pod,
      podGone: this.pods.gone,
      job: this.job,
      ownerRead: this.jobRead,
      trailer: this.parser.trailer,
      accepted: this.parser.accepted,
      log: this.options.followLog ? this.logState : 'none',
    };
  }

  /** Everything the log held, capped; flagged truncated when it was cut at the read limit. */
  private output(): ParsedOutput {
    return this.parser.result(this.parser.bytes < this.limit);
  }

  private newParser(): LauncherLogParser {
    return new LauncherLogParser(capsOf(this.spec.policy));
  }

  /** Opens the log stream once the container has started (again from the top if a stream broke). */
  private async follow(): Promise<void> {
    if (this.logState === 'open' || this.logState === 'ended') return;
    const pod = this.pods.pod;
    const cs = pod?.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
    if (!pod || !(cs?.state?.running || cs?.state?.terminated)) return;
    if (this.logState === 'broken') this.parser = this.newParser();
    const parser = this.parser;
    try {
      this.log = await openLogStream(
        this.kube,
        {
          namespace: this.spec.policy.namespace,
          pod: pod.metadata!.name!,
          container: CONTAINER_NAME,
          limitBytes: this.limit,
          follow: true,
        },
        (piece) => {
          parser.push(piece);
          this.pods.poke();
        },
      );
    } catch (err) {
      const s = apiStatus(err);
      // 400: the container is not ready to be read yet; 404: the pod is gone (the watch will say so).
      if (s && (s.code === 400 || s.code === 404)) return;
      throw kubeFailure(err, `follow the log of pod ${pod.metadata!.name}`);
    }
    this.logState = 'open';
    const stream = this.log;
    void stream.done.then((how) => {
      if (this.log !== stream) return;
      this.logState = how === 'end' ? 'ended' : 'broken';
      this.pods.poke();
    });
  }

  /** Reads the owner's status, when the sandbox has an owner to read (its Job). */
  private async readOwner(): Promise<void> {
    if (this.setup.sandbox.owner !== 'job') return;
    const { name } = resourceNames(this.spec.executionId, this.spec.attempt);
    this.job = await kubeCallOrMissing(`read Job ${name}`, () =>
      this.kube.batch.readNamespacedJob({ name, namespace: this.spec.policy.namespace }),
    );
    this.jobRead = true;
  }

  /** Stops a sandbox that outlived its time limit: its pod is deleted at once. */
  private async stopPod(pod: string): Promise<void> {
    await kubeCallOrMissing(`stop pod ${pod} at its time limit`, () =>
      this.kube.core.deleteNamespacedPod({ name: pod, namespace: this.spec.policy.namespace, gracePeriodSeconds: 0 }),
    );
  }

  private beat(force: boolean): void {
    const progress = this.memo.progress;
    const key = `${this.parser.bytes}|${JSON.stringify(progress)}`;
    const now = Date.now();
    if (!force && key === this.lastBeat.key && now - this.lastBeat.at < HEARTBEAT_MS) return;
    this.lastBeat = { at: now, key };
    this.ctx.heartbeat({
      attempt: this.spec.attempt,
      sandbox: this.kind,
      progress,
      ...(this.options.acquiredAt !== undefined ? { acquiredAt: this.options.acquiredAt } : {}),
      ...(this.options.followLog ? { output: this.parser.live() } : {}),
    });
  }
}

/**
 * Watches one attempt to its end: the pod through a watch (attempt-pods.ts), and, when asked, the container's log
 * as it is written (log-stream.ts), parsed into capped stdout and stderr as it streams (core/output.ts).
 *
 * It ends as soon as the launcher's trailer says the program exited by itself or hit its time limit. Without such
 * a trailer (OOM kill, eviction, the Job's deadline, a lost pod, a program ended by a signal) the kubelet's status
 * decides, classified by core/classify.ts, after the rest of the log has been read.
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { AttemptEnd, AttemptSpec, RunHeartbeat } from '../core/attempt';
import { classify, infraError, observe, type PodProgress, type Verdict } from '../core/classify';
import { activeDeadlineSeconds, CONTAINER_NAME } from '../core/manifests';
import { resourceNames } from '../core/names';
import { capsOf, LauncherLogParser, logReadLimit, type LauncherTrailer, type ParsedOutput } from '../core/output';
import { AttemptPods } from './attempt-pods';
import { apiStatus, kubeCallOrMissing, kubeFailure, type Kube } from './kube';
import { openLogStream, type LogStream } from './log-stream';

/** Full re-read of the Job and pods, in case a watch event was missed or the watch stalled. */
const RESYNC_MS = 10_000;
/** Longest sleep between evaluations (the unschedulable grace is measured in these steps). */
const TICK_MS = 2_000;
/** Once the kubelet says the container is done, how long the rest of its log may take to arrive. */
const LOG_DRAIN_MS = 3_000;
/** Beyond the Job's own deadline, how long the step waits before calling the attempt timed out itself. */
export const DEADLINE_GRACE_MS = 30_000;
/**
 * Beyond the program's time limit, counted from its start as seen from outside, how long the launcher has to report
 * it timed out; then the step stops the sandbox itself (a launcher the program stopped, killed or hung).
 */
export const OUTSIDE_GRACE_MS = 3_000;
/**
 * Heartbeats go out at once when something changed (the worker's heartbeat throttle, LIVE_OUTPUT_INTERVAL, spaces
 * them) and at least this often otherwise, well inside the heartbeat timeout.
 */
const HEARTBEAT_MS = 3_000;

export type AttemptEndNotCancelled = Exclude<AttemptEnd, { kind: 'cancelled' }>;

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

/** A trailer that settles the attempt by itself: the program exited on its own, or the launcher timed it out. */
function settles(t: LauncherTrailer | null): t is LauncherTrailer {
  return !!t && !t.terminated && (t.signal === null || t.timedOut);
}

function endOf(verdict: Exclude<Verdict, { state: 'pending' }>): AttemptEndNotCancelled {
  switch (verdict.state) {
    case 'finished':
      return { kind: 'finished', exitCode: verdict.exitCode, reason: verdict.reason, oomKilled: verdict.oomKilled };
    case 'deadline':
      return { kind: 'deadline' };
    case 'infra':
      return { kind: 'infra', error: verdict.error };
  }
}

export class AttemptWatch {
  private progress: PodProgress;
  private readonly pods: AttemptPods;
  private job: V1Job | undefined;
  private jobRead = false;
  /** The Job was read for the decision at hand. */
  private jobFresh = false;
  private readonly limit: number;
  private parser: LauncherLogParser;
  private log: LogStream | undefined;
  private logState: 'none' | 'open' | 'ended' | 'broken' = 'none';
  private drainSince: number | undefined;
  private lastBeat = { at: 0, key: '' };
  private stopped = false;

  constructor(
    private readonly kube: Kube,
    private readonly spec: AttemptSpec,
    private readonly ctx: WatchContext,
    private readonly options: {
      followLog: boolean;
      /** The Job as its create returned it: spares a read until a decision needs a fresh one. */
      job?: V1Job;
      acquiredAt?: number;
      /** What an earlier try of the step had seen (its last heartbeat). */
      resumed?: PodProgress;
      /** A warm pool pod: no Job; its launcher must accept this attempt's task and no other. */
      warm?: boolean;
      /** Where a fresh attempt's watch starts: the resourceVersion of its Job's create or its pod's claim. */
      from?: { resourceVersion?: string; pod?: V1Pod };
      /** Called once when the pod is first seen waiting for a node (the warm pools then give way). */
      onWaitsForNode?: () => void;
    },
  ) {
    this.job = options.job;
    this.progress = { ...(options.resumed ?? {}) };
    const { attemptSelector } = resourceNames(spec.executionId, spec.attempt);
    const known = this.progress.podName
      ? { name: this.progress.podName, finished: this.progress.containerFinishedAt !== undefined }
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
        const now = Date.now();
        const pod = this.pods.pod;
        if (pod) {
          const waited = this.progress.unschedulableSince !== undefined;
          this.progress = observe(this.progress, pod, now);
          if (!waited && this.progress.unschedulableSince !== undefined) this.options.onWaitsForNode?.();
        }
        if (this.options.followLog) await this.follow();
        const end = await this.decide(now);
        if (end) {
          this.beat(true);
          return { end, progress: this.progress, ...(this.options.followLog ? { output: this.output() } : {}) };
        }
        this.beat(false);
        await this.pods.changed(this.nextWake(Date.now()));
        if (Date.now() - lastResync >= RESYNC_MS) {
          await this.pods.resync();
          await this.readJob();
          lastResync = Date.now();
        }
      }
    } finally {
      this.ctx.cancellationSignal.removeEventListener('abort', onCancel);
      this.stop();
    }
  }

  stop(): void {
    this.stopped = true;
    this.pods.stop();
    this.log?.abort();
    this.pods.poke();
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

  /** Whether the container has run (so it has a log to read). */
  private containerRan(): boolean {
    const cs = this.pods.pod?.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
    return this.progress.containerStartedAt !== undefined || !!(cs?.state?.running || cs?.state?.terminated);
  }

  private async readJob(): Promise<void> {
    if (this.options.warm) return;
    const { name } = resourceNames(this.spec.executionId, this.spec.attempt);
    this.job = await kubeCallOrMissing(`read Job ${name}`, () =>
      this.kube.batch.readNamespacedJob({ name, namespace: this.spec.policy.namespace }),
    );
    this.jobRead = true;
  }

  private classify(now: number): Verdict {
    return classify({
      job: this.job,
      pod: this.pods.pod,
      podGone: this.pods.gone,
      progress: this.progress,
      now,
      unschedulableGraceSeconds: this.spec.policy.unschedulableGraceSeconds,
      owner: this.options.warm ? 'pod' : 'job',
    });
  }

  /** A warm sandbox that ran nothing of ours: its launcher refused the task, or accepted another one. */
  private deliveryFailure(): AttemptEndNotCancelled | undefined {
    if (!this.options.warm) return undefined;
    const accepted = this.parser.accepted;
    if (accepted && (accepted.executionId !== this.spec.executionId || accepted.attempt !== this.spec.attempt)) {
      return {
        kind: 'infra',
        error: infraError(
          'DeliveryFailed',
          `the warm sandbox accepted another task (${accepted.executionId} #${accepted.attempt})`,
        ),
      };
    }
    const t = this.parser.trailer;
    if (t && !accepted)
      return {
        kind: 'infra',
        error: infraError('DeliveryFailed', t.error ?? 'the warm sandbox ended before it accepted the task'),
      };
    return undefined;
  }

  /** When the time limit is enforced from outside: the program's start as seen here, its limit and the grace. */
  private enforceAt(): number | undefined {
    const start = this.progress.programStartedAt;
    return start === undefined ? undefined : start + this.spec.request.timeoutSeconds * 1000 + OUTSIDE_GRACE_MS;
  }

  /** How long to wait for the next event: a tick, or less when the outside time limit falls due before it. */
  private nextWake(now: number): number {
    const at = this.enforceAt();
    const pending =
      at !== undefined &&
      at > now &&
      this.options.followLog &&
      !this.parser.trailer &&
      this.progress.containerFinishedAt === undefined;
    return pending ? Math.min(TICK_MS, at - now + 5) : TICK_MS;
  }

  /**
   * The program outlived its time limit and the launcher has not said so: the sandbox is stopped from outside (the
   * pod deleted at once), and the attempt ends timed out with the output read so far.
   */
  private async enforceTimeLimit(now: number): Promise<AttemptEndNotCancelled | undefined> {
    if (!this.options.warm && this.progress.containerStartedAt !== undefined) {
      this.progress.programStartedAt ??= this.progress.containerStartedAt;
    }
    if (this.options.warm && this.parser.accepted) this.progress.programStartedAt ??= now;
    const at = this.enforceAt();
    const pod = this.progress.podName;
    // Only a followed log can show the launcher's word; a container already ended is the kubelet's to classify.
    if (!this.options.followLog || this.progress.containerFinishedAt !== undefined) return undefined;
    if (at === undefined || now < at || this.parser.trailer || !pod) return undefined;
    await kubeCallOrMissing(`stop pod ${pod} at its time limit`, () =>
      this.kube.core.deleteNamespacedPod({ name: pod, namespace: this.spec.policy.namespace, gracePeriodSeconds: 0 }),
    );
    this.progress.waitingFor = undefined;
    return { kind: 'deadline' };
  }

  private async decide(now: number): Promise<AttemptEndNotCancelled | undefined> {
    const refused = this.deliveryFailure();
    if (refused) return refused;
    const trailer = this.parser.trailer;
    const overdue = await this.enforceTimeLimit(now);
    if (overdue) return overdue;
    if (settles(trailer)) {
      this.progress.waitingFor = undefined;
      return {
        kind: 'finished',
        exitCode: trailer.exitCode,
        reason: trailer.timedOut ? 'TimedOut' : 'Completed',
        oomKilled: false,
      };
    }
    if (!this.job && !this.jobRead && !this.options.warm) await this.readJob();
    let verdict = this.classify(now);
    if (verdict.state === 'pending') {
      const deadline = this.options.acquiredAt
        ? this.options.acquiredAt +
          activeDeadlineSeconds(this.spec.request, this.spec.policy) * 1000 +
          DEADLINE_GRACE_MS
        : Infinity;
      this.progress.waitingFor = verdict.detail;
      this.jobFresh = false;
      return now > deadline ? { kind: 'deadline' } : undefined;
    }
    if (this.options.followLog && this.containerRan() && this.logState !== 'ended') {
      // No trailer settled it: before the kubelet's word decides, read what the container wrote (the log may still
      // be draining, or not open yet when the container ran and ended between two looks).
      this.drainSince ??= now;
      if (now - this.drainSince < LOG_DRAIN_MS) {
        await this.follow();
        return undefined;
      }
    }
    if (!this.jobFresh) {
      // Look once more before deciding: a pod event may still be on its way, and the Job's deadline condition may
      // be newer than the pod's status.
      await this.pods.resync();
      await this.readJob();
      this.jobFresh = true;
      verdict = this.classify(now);
      if (verdict.state === 'pending') return undefined;
    }
    this.progress.waitingFor = undefined;
    if (this.options.warm && !this.parser.accepted && verdict.state !== 'infra') {
      // The pool pod ended without ever taking the task: nothing of the program ran there.
      return {
        kind: 'infra',
        error: infraError('DeliveryFailed', 'the warm sandbox ended before it accepted the task'),
      };
    }
    return endOf(verdict);
  }

  private beat(force: boolean): void {
    const key = `${this.parser.bytes}|${JSON.stringify(this.progress)}`;
    const now = Date.now();
    if (!force && key === this.lastBeat.key && now - this.lastBeat.at < HEARTBEAT_MS) return;
    this.lastBeat = { at: now, key };
    this.ctx.heartbeat({
      attempt: this.spec.attempt,
      sandbox: this.options.warm ? 'warm' : 'cold',
      progress: this.progress,
      ...(this.options.acquiredAt !== undefined ? { acquiredAt: this.options.acquiredAt } : {}),
      ...(this.options.followLog ? { output: this.parser.live() } : {}),
    });
  }
}

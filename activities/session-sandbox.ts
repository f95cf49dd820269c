/**
 * The steps of a session (workflows/session.ts): open its pod (one hardened sandbox whose launcher keeps one
 * interpreter, launcher.py --session), run one run in it, and release its pods. A run's task goes to the launcher
 * over pods/attach and its output comes back on the same attach (only what the launcher writes while attached: this
 * run's lines); a retried step never sends the run again: it reads the run from the pod's log, as does a step whose
 * attach broke before the run's end came through. A pod lost under a run ends the run as SandboxLost, never re-run.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { Context, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { AttemptEnd, CollectedOutput } from '../core/attempt';
import { infraError } from '../core/classify';
import type { LauncherSessionNote } from '../core/launcher-protocol';
import { CONTAINER_NAME, launcherTask } from '../core/manifests';
import { capsOf, collectedOutput, LauncherLogParser, logReadLimit } from '../core/output';
import type { ExecutionPolicy } from '../core/policy';
import { sessionKernelOf } from '../core/languages';
import { ANNOTATIONS, LABELS } from '../core/names';
import { fitsPool, poolRef, poolSelector, claimable } from '../core/pool';
import {
  buildSessionPod,
  poolPodFitsSession,
  sessionClaimPatch,
  sessionSelector,
  type SessionSpec,
} from '../core/session';
import type { ExecutionRequest } from '../core/validate';
import { createOrAdopt } from './adopt';
import { LauncherAttachments, type HeldAttach } from './attach';
import { poolSize, type ActivityDeps } from './deps';
import { apiStatus, kubeCall, kubeCallOrMissing, kubeFailure } from './kube';
import { openLogStream } from './log-stream';
import { recordConfirmed } from './record';
import { frameTask } from './task-frame';
import { nudgePools, poolPods } from './warm-sandbox';
import { decideSessionRun, podAlive, SESSION_RUN, type SessionRunMemo } from '../core/session-run';
import { compactLauncher } from './launcher-program';
import { networkFor, networkReport } from './egress';
import { sessionEgressId, type EgressRule, type NetworkReport } from '../core/egress';
import type { SandboxNetwork } from '../core/manifests';

/** A session's egress: one id for its whole life, whatever pod it is on. */
function sessionNetwork(
  deps: ActivityDeps,
  sessionId: string,
  rules: EgressRule[] | undefined,
  policy: ExecutionPolicy,
): SandboxNetwork | undefined {
  return networkFor(deps, sessionEgressId(sessionId), rules, policy);
}

/** How often a run's step heartbeats (with its live output). */
const HEARTBEAT_MS = 1_000;

export interface OpenedPod {
  pod: string;
  /** When the pod was running and its launcher waiting. */
  at: number;
  /** Claimed from the warm pool (its launcher started in warm mode and becomes the session's with the first run). */
  warm?: boolean;
}

export interface SessionRunSpec {
  sessionId: string;
  seq: number;
  pod: string;
  request: ExecutionRequest;
  policy: ExecutionPolicy;
  /** How long the launcher waits for the session's next run before it ends itself (a claimed pool pod learns it so). */
  idleSeconds?: number;
  /** The run's id (its Update's), in every heartbeat: what a client follows the run's live output by. */
  runId?: string;
  /** The session's allow-list (its egress, for its life), when it has one. */
  egress?: EgressRule[];
  /** Not a run: restore the interpreter's state from the workspace's checkpoint, or run earlier runs again. */
  op?: 'restore' | 'replay';
  codes?: string[];
  /** Checkpoint the interpreter's state after the run (the launcher's `k` line), up to maxBytes. */
  checkpoint?: { maxBytes: number };
  /** How long the whole task may take (a replay's runs, each within the request's limit); default: the request's. */
  watchSeconds?: number;
}

export interface SessionRunReport {
  end: Exclude<AttemptEnd, { kind: 'cancelled' }>;
  output: CollectedOutput;
  session: LauncherSessionNote | null;
  /** When the task was handed over. */
  sentAt: number;
  /** The pod was gone (or ended) before the run could be handed to it: nothing ran. */
  notSent?: true;
  /** With egress: what the run reached and was refused. */
  network?: NetworkReport;
  /** The pod ended under the run (it is lost to the session, whatever the run's end). */
  podGone?: true;
}

interface RunHeartbeat {
  seq: number;
  sentAt?: number;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function sessionActivities(deps: ActivityDeps) {
  const { kube, launcherSource } = deps;
  const attachments = new LauncherAttachments(kube);
  const readPod = (namespace: string, name: string) =>
    kubeCallOrMissing(`read session pod ${name}`, () => kube.core.readNamespacedPod({ name, namespace }));

  /** The live pod of this generation an earlier try of the step created or claimed, if any. */
  const takenBefore = async (input: { sessionId: string; generation: number; policy: ExecutionPolicy }) => {
    const list = await kubeCall('list session pods', () =>
      kube.core.listNamespacedPod({
        namespace: input.policy.namespace,
        labelSelector: sessionSelector(input.sessionId),
      }),
    );
    const own = list.items.find(
      (p) => p.metadata?.labels?.[LABELS.sessionGeneration] === String(input.generation) && podAlive(p),
    );
    return own?.metadata?.name;
  };

  return {
    /**
     * The session's pod of this generation: the one an earlier try of the step took, a ready pod of the warm pool
     * claimed for the session, or a new one (created, or adopted by its name) once its launcher runs.
     */
    async openSessionPod(input: {
      sessionId: string;
      generation: number;
      spec: SessionSpec;
      policy: ExecutionPolicy;
    }): Promise<OpenedPod> {
      const ctx = Context.current();
      const network = sessionNetwork(deps, input.sessionId, input.spec.egress, input.policy);
      const body = buildSessionPod({
        ...input,
        launcherSource: compactLauncher(launcherSource),
        ...(network ? { network } : {}),
      });
      const namespace = input.policy.namespace;
      const name = body.metadata!.name!;
      // A retried step first looks for what an earlier try took: a claimed pool pod is the session's already; a pod
      // of its own is adopted below by its name.
      const before = ctx.info.attempt > 1 ? await takenBefore(input) : undefined;
      if (before && before !== name) return { pod: before, at: Date.now(), warm: true };
      const warm = before ? undefined : await claimForSession(deps, ctx.info.taskQueue, input);
      if (warm) return { pod: warm, at: Date.now(), warm: true };
      await createOrAdopt(
        'Pod',
        body,
        () => kube.core.createNamespacedPod({ namespace, body }),
        () => kube.core.readNamespacedPod({ name, namespace }),
      );
      const until = Date.now() + input.policy.startupAllowanceSeconds * 1000;
      for (;;) {
        const pod = await readPod(namespace, name);
        const cs = pod?.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME);
        if (pod && podAlive(pod) && cs?.state?.running) return { pod: name, at: Date.now(), warm: false };
        const waiting = cs?.state?.waiting?.reason;
        if (!podAlive(pod) || ['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName'].includes(waiting ?? ''))
          throw ApplicationFailure.retryable(
            `session pod ${name} did not start (${waiting ?? pod?.status?.phase ?? 'gone'})`,
          );
        if (Date.now() > until)
          throw ApplicationFailure.retryable(
            `session pod ${name} was not running within ${input.policy.startupAllowanceSeconds} s`,
          );
        ctx.heartbeat({ waiting: waiting ?? pod?.status?.phase });
        await delay(250);
      }
    },

    /** Runs one run in the session's pod and returns how it ended, with its output (core/session-run.ts decides). */
    async runInSession(spec: SessionRunSpec): Promise<SessionRunReport> {
      const ctx = Context.current();
      const { namespace } = spec.policy;
      const caps = capsOf(spec.policy);
      let parser = new LauncherLogParser(caps, { run: spec.seq });
      const earlier = ctx.info.heartbeatDetails as RunHeartbeat | undefined;
      // Something came (output, the channel's end, a change of the pod) since the loop last looked: it decides again.
      let woken = false;
      let resume: () => void = () => undefined;
      const wake = () => {
        woken = true;
        resume();
      };
      /** The channel the run's lines come on (the attach, or the pod's log) has ended without its trailer. */
      let channelDown = false;
      let reopened = 0;
      let close: () => void = () => undefined;
      const channel = () => {
        const mine = new LauncherLogParser(caps, { run: spec.seq });
        parser = mine;
        channelDown = false;
        return {
          onData: (piece: Buffer | string) => {
            if (parser !== mine) return;
            mine.push(typeof piece === 'string' ? piece : new Uint8Array(piece));
            wake();
          },
          ended: () => {
            if (parser !== mine) return;
            channelDown = true;
            wake();
          },
        };
      };
      /** Reads the run from the pod's log, from a little before its handover (the log keeps every run's lines). */
      const followLog = async (sentAt: number): Promise<void> => {
        const c = channel();
        try {
          const stream = await openLogStream(
            kube,
            {
              namespace,
              pod: spec.pod,
              container: CONTAINER_NAME,
              limitBytes: logReadLimit(caps),
              follow: true,
              since: sentAt - 2000,
            },
            c.onData,
          );
          close = () => stream.abort();
          void stream.done.then(c.ended);
        } catch (err) {
          const s = apiStatus(err);
          if (!(s && (s.code === 400 || s.code === 404))) throw kubeFailure(err, `follow the log of ${spec.pod}`);
          // The pod is gone or ended: the next look at it says so.
        }
      };
      /** The run as the launcher takes it. */
      const taskOf = () => ({
        ...launcherTask(
          spec.sessionId,
          1,
          spec.request,
          spec.policy,
          'handed',
          sessionNetwork(deps, spec.sessionId, spec.egress, spec.policy),
        ),
        seq: spec.seq,
        kernel: sessionKernelOf(spec.request.language),
        ...(spec.idleSeconds !== undefined ? { idleSeconds: spec.idleSeconds } : {}),
        ...(spec.op ? { op: spec.op } : {}),
        ...(spec.codes ? { codes: spec.codes } : {}),
        ...(spec.checkpoint ? { checkpoint: spec.checkpoint } : {}),
      });
      let sentAt: number;
      /** The pod as the look before the handover saw it. */
      let handedPod: V1Pod | undefined;
      /** When the run was last handed over (a retry may hand it again): its time limit counts from there. */
      let handedAt: number;
      if (earlier?.sentAt !== undefined) {
        // An earlier try recorded the handover and may have died before or after writing the run: what the pod has
        // written of it is in its log, read from then. A launcher that takes each run once is handed it again (one
        // that took it does not run it again); an older one never is.
        sentAt = earlier.sentAt;
        handedAt = sentAt;
        await followLog(sentAt);
        const pod = await readPod(namespace, spec.pod);
        if (podAlive(pod) && pod?.metadata?.annotations?.[ANNOTATIONS.runsOnce] === 'true') {
          try {
            const held = await attachments.use(namespace, spec.pod, `attach to ${spec.pod}`);
            handedAt = Date.now();
            held.write(frameTask(taskOf()));
          } catch (err) {
            // The pod is going or gone: the loop below sees it and says so.
            ctx.log.warn(`session run ${spec.seq}: could not hand it again: ${(err as Error).message}`);
          }
        }
      } else {
        sentAt = Date.now();
        const c = channel();
        // The attach opens (or is reused) while the handover is recorded (a retry must know not to hand the run over
        // again); the task is written only once both are done.
        const recorded = recordConfirmed(deps, ctx, { seq: spec.seq, sentAt } satisfies RunHeartbeat);
        recorded.catch(() => undefined);
        // And the pod is looked at: one deleted between runs may still run for a moment, attached, but is going.
        const looked = readPod(namespace, spec.pod);
        looked.catch(() => undefined);
        let held: HeldAttach | undefined;
        let failed: unknown;
        try {
          held = await attachments.use(namespace, spec.pod, `attach to ${spec.pod}`);
        } catch (err) {
          failed = err;
        }
        await recorded;
        handedPod = await looked;
        if (!podAlive(handedPod)) {
          attachments.closePods(namespace, [spec.pod]);
          return { ...lost(parser, sentAt, `session pod ${spec.pod} was gone before the run`), notSent: true };
        }
        if (!held) throw failed;
        close = held.listen(c.onData, c.ended);
        handedAt = sentAt;
        held.write(frameTask(taskOf()));
      }
      const setup = {
        pod: spec.pod,
        giveUpAt: handedAt + (spec.watchSeconds ?? spec.request.timeoutSeconds) * 1000 + SESSION_RUN.graceMs,
      };
      const memo: SessionRunMemo = {};
      // The pod as the step knows it: the look before the handover, then the worker's pod cache's changes to it (no
      // request of its own), and a look on the apiserver before any verdict. Without a cache: a look every second.
      const cache = kube.pods?.for(namespace);
      const seen: { pod: V1Pod | undefined; fresh: boolean; lookedAt?: number } = handedPod
        ? { pod: handedPod, fresh: true, lookedAt: sentAt }
        : { pod: undefined, fresh: false };
      const unsubscribe = cache?.subscribe((event, pod) => {
        if (pod.metadata?.name !== spec.pod) return;
        seen.pod = event === 'delete' ? undefined : pod;
        seen.fresh = false;
        wake();
      });
      let lastBeat = 0;
      try {
        for (;;) {
          if (ctx.cancellationSignal.aborted) await ctx.cancelled;
          const now = Date.now();
          if (now - lastBeat >= HEARTBEAT_MS) {
            lastBeat = now;
            ctx.heartbeat({ seq: spec.seq, sentAt, output: parser.live(), runId: spec.runId });
          }
          const step = decideSessionRun(
            setup,
            {
              now,
              trailer: parser.trailer,
              channel: channelDown ? 'broken' : 'open',
              reopened,
              pod: seen.pod,
              fresh: seen.fresh,
              cached: !!cache,
              ...(seen.lookedAt !== undefined ? { lookedAt: seen.lookedAt } : {}),
            },
            memo,
          );
          switch (step.do) {
            case 'answer': {
              const network = spec.egress?.length
                ? await networkReport(deps, sessionEgressId(spec.sessionId), spec.egress, sentAt - 1000)
                : undefined;
              return {
                end: step.end,
                output: collectedOutput(parser.result(true), Date.now()),
                session: parser.session,
                sentAt,
                ...(network ? { network } : {}),
              };
            }
            case 'lost':
              return lost(parser, sentAt, step.message);
            case 'oom':
              return {
                end: { kind: 'finished', exitCode: 137, reason: 'OOMKilled', oomKilled: true },
                output: collectedOutput(parser.result(false), Date.now()),
                session: parser.session,
                sentAt,
                podGone: true,
              };
            case 'reopen':
              // The attach (or the log stream) broke before the run's end came through: the pod's log has all of it.
              reopened++;
              ctx.log.warn(`session run ${spec.seq}: its output channel broke; reading it from the log of ${spec.pod}`);
              close();
              await delay(step.afterMs);
              await followLog(sentAt);
              continue;
            case 'look':
              seen.lookedAt = Date.now();
              seen.pod = await readPod(namespace, spec.pod);
              seen.fresh = true;
              continue;
            case 'stop':
              await kubeCall(`stop session pod ${spec.pod}`, () =>
                kube.core.deleteNamespacedPod({ name: spec.pod, namespace, gracePeriodSeconds: 0 }),
              ).catch(() => undefined);
              return lost(parser, sentAt, step.message);
            case 'wait':
              if (!woken)
                await new Promise<void>((resolve) => {
                  resume = resolve;
                  setTimeout(resolve, Math.max(1, step.ms));
                });
              woken = false;
          }
        }
      } finally {
        unsubscribe?.();
        close();
      }
    },

    /** Deletes every pod of the session and waits until none is left. */
    async releaseSessionPods(input: { sessionId: string; namespace: string }): Promise<{ deleted: number }> {
      const ctx = Context.current();
      const selector = sessionSelector(input.sessionId);
      const list = await kubeCall('list session pods', () =>
        kube.core.listNamespacedPod({ namespace: input.namespace, labelSelector: selector }),
      );
      attachments.closePods(
        input.namespace,
        list.items.map((p) => p.metadata!.name!),
      );
      for (const p of list.items) {
        await kubeCallOrMissing(`delete session pod ${p.metadata!.name}`, () =>
          kube.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: input.namespace, gracePeriodSeconds: 0 }),
        );
      }
      for (let i = 0; ; i++) {
        const left = await kubeCall('list session pods', () =>
          kube.core.listNamespacedPod({ namespace: input.namespace, labelSelector: selector }),
        );
        if (left.items.length === 0) return { deleted: list.items.length };
        if (i > 120) throw ApplicationFailure.retryable(`${left.items.length} session pod(s) still present`);
        ctx.heartbeat({ left: left.items.length });
        await delay(500);
      }
    },
  };
}

function lost(parser: LauncherLogParser, sentAt: number, message: string): SessionRunReport {
  return {
    end: { kind: 'infra', error: infraError('SandboxLost', message) },
    output: collectedOutput(parser.result(true), Date.now()),
    session: parser.session,
    sentAt,
  };
}

/**
 * Claims a ready pod of the session's language pool for the session (one conditional write per candidate: a pod
 * taken by someone else first answers 409 and the next is tried). Undefined when the pool is off, does not fit the
 * session's limits, or has nothing ready: the session then gets a pod of its own.
 */
async function claimForSession(
  deps: ActivityDeps,
  taskQueue: string,
  input: { sessionId: string; generation: number; spec: SessionSpec; policy: ExecutionPolicy },
): Promise<string | undefined> {
  const { spec, policy } = input;
  const language = spec.language;
  if (poolSize(deps, language) === 0 || !fitsPool({ cpu: spec.cpu, memory: spec.memory }, policy)) return undefined;
  const pool = poolRef(taskQueue, language, policy, deps.launcherSource);
  const namespace = policy.namespace;
  const items = await poolPods(deps.kube, namespace, poolSelector(pool, 'ready'), `list the ${pool.id} pool`);
  const now = Date.now();
  const ready = items.filter((p) => claimable(p, pool) && poolPodFitsSession(p, spec, policy, now));
  for (const candidate of ready) {
    const name = candidate.metadata!.name!;
    try {
      await deps.kube.core.patchNamespacedPod(
        {
          name,
          namespace,
          body: sessionClaimPatch(candidate, {
            ...input,
            now: Date.now(),
            network: sessionNetwork(deps, input.sessionId, spec.egress, policy),
          }),
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      nudgePools(deps, taskQueue, [language]);
      log.info('session took a warm pool pod', { sessionId: input.sessionId, pod: name });
      return name;
    } catch (err) {
      const s = apiStatus(err);
      if (s && [404, 409, 422].includes(s.code)) continue;
      throw kubeFailure(err, `claim pool pod ${name} for session ${input.sessionId}`);
    }
  }
  return undefined;
}

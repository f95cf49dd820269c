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
import { LABELS } from '../core/names';
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

/** How long past a run's time limit (and the launcher's 2 s to interrupt it) the step waits before it stops the pod. */
const RUN_GRACE_MS = 15_000;
const POLL_MS = 1_000;
/** How many times a run's broken channel is reopened (from the pod's log) before the step waits for its limit. */
const MAX_REOPENS = 10;

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
}

interface RunHeartbeat {
  seq: number;
  sentAt?: number;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether the pod can still run anything: present, not being deleted, not ended. */
function alive(pod: V1Pod | undefined): boolean {
  return !!pod && !pod.metadata?.deletionTimestamp && !['Failed', 'Succeeded'].includes(pod.status?.phase ?? '');
}

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
      (p) => p.metadata?.labels?.[LABELS.sessionGeneration] === String(input.generation) && alive(p),
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
        if (pod && alive(pod) && cs?.state?.running) return { pod: name, at: Date.now(), warm: false };
        const waiting = cs?.state?.waiting?.reason;
        if (!alive(pod) || ['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName'].includes(waiting ?? ''))
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

    /** Runs one run in the session's pod and returns how it ended, with its output. */
    async runInSession(spec: SessionRunSpec): Promise<SessionRunReport> {
      const ctx = Context.current();
      const { namespace } = spec.policy;
      const caps = capsOf(spec.policy);
      let parser = new LauncherLogParser(caps, { run: spec.seq });
      const earlier = ctx.info.heartbeatDetails as RunHeartbeat | undefined;
      // Something came (output, the channel's end) since the loop last looked: it looks again at once.
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
      let sentAt: number;
      if (earlier?.sentAt !== undefined) {
        // An earlier try handed the run over: never again; read what the pod has written of it since.
        sentAt = earlier.sentAt;
        await followLog(sentAt);
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
        if (!alive(await looked)) {
          attachments.closePods(namespace, [spec.pod]);
          return { ...lost(parser, sentAt, `session pod ${spec.pod} was gone before the run`), notSent: true };
        }
        if (!held) throw failed;
        close = held.listen(c.onData, c.ended);
        const task = {
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
        };
        held.write(frameTask(task));
      }
      const giveUpAt = sentAt + spec.request.timeoutSeconds * 1000 + RUN_GRACE_MS;
      // A run just handed over was preceded by a look at its pod: the next look is due a beat later.
      let lastBeat = earlier?.sentAt !== undefined ? 0 : Date.now();
      try {
        for (;;) {
          if (parser.trailer) {
            const t = parser.trailer;
            // The launcher was being stopped (the pod deleted or evicted) when the run ended: the sandbox is lost.
            if (t.terminated) return lost(parser, sentAt, `session pod ${spec.pod} was stopped during the run`);
            const end: SessionRunReport['end'] =
              t.error && !t.timedOut && t.signal !== null
                ? { kind: 'finished', exitCode: t.exitCode, reason: 'InterpreterExited', oomKilled: false }
                : {
                    kind: 'finished',
                    exitCode: t.exitCode,
                    reason: t.timedOut ? 'TimedOut' : 'Completed',
                    oomKilled: false,
                  };
            const network = spec.egress?.length
              ? await networkReport(deps, sessionEgressId(spec.sessionId), spec.egress, sentAt - 1000)
              : undefined;
            return {
              end,
              output: collectedOutput(parser.result(true), Date.now()),
              session: parser.session,
              sentAt,
              ...(network ? { network } : {}),
            };
          }
          if (ctx.cancellationSignal.aborted) await ctx.cancelled;
          if (channelDown && reopened < MAX_REOPENS) {
            // The attach (or the log stream) broke before the run's end came through: the pod's log has all of it.
            reopened++;
            ctx.log.warn(`session run ${spec.seq}: its output channel broke; reading it from the log of ${spec.pod}`);
            close();
            await delay(Math.min(2000, 200 * reopened));
            await followLog(sentAt);
            continue;
          }
          const now = Date.now();
          if (now - lastBeat >= POLL_MS) {
            lastBeat = now;
            ctx.heartbeat({ seq: spec.seq, sentAt, output: parser.live(), runId: spec.runId });
            const pod = await readPod(namespace, spec.pod);
            if (!alive(pod)) {
              // What it wrote until then may still be on its way.
              await delay(300);
              if (parser.trailer) continue;
              return lost(
                parser,
                sentAt,
                `session pod ${spec.pod} was ${pod ? `ended (${pod.status?.phase ?? 'deleted'})` : 'deleted'} during the run`,
              );
            }
            if (now > giveUpAt) {
              // The launcher did not answer in time: the sandbox is stopped; the next run gets a new one.
              await kubeCall(`stop session pod ${spec.pod}`, () =>
                kube.core.deleteNamespacedPod({ name: spec.pod, namespace, gracePeriodSeconds: 0 }),
              ).catch(() => undefined);
              return lost(
                parser,
                sentAt,
                `the session's launcher did not answer within the run's time limit; its pod was stopped`,
              );
            }
          }
          if (!woken)
            await new Promise<void>((resolve) => {
              resume = resolve;
              setTimeout(resolve, 250);
            });
          woken = false;
        }
      } finally {
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

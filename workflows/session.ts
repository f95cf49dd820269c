/**
 * session: one durable session (workflow id = session id). It owns one hardened pod at a time whose launcher keeps
 * one interpreter for all runs; each run is an Update, run one at a time in the order received. A pod released on
 * idle, or lost, is replaced at the next run, and the interpreter's state is rebuilt by running the session's earlier
 * successful runs again, in order (their output discarded); the run's result says so. Its lifetime ends it; close
 * ends it; either way its pods are deleted before it completes. Long sessions continue-as-new.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  currentUpdateInfo,
  isCancellation,
  patched,
  defineQuery,
  defineUpdate,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  allHandlersFinished,
  workflowInfo,
} from '@temporalio/workflow';
import type { SandboxActivities } from '../activities';
import type { SessionRunReport } from '../activities/session-sandbox';
import { STEP_FAILURES } from '../core/failures';
import { DEFAULT_LANGUAGE } from '../core/languages';
import type { ExecutionPolicy } from '../core/policy';
import { buildResult } from '../core/result';
import {
  acceptDeadlinePassed,
  SESSION_HANDLERS,
  SESSION_HISTORY,
  SESSION_IDLE_GRACE_SECONDS,
  sessionLimitMessage,
  validateSessionOptions,
  validateSessionRun,
  type SessionOptions,
  type SessionRunInput,
  type SessionRunResult,
  type SessionSpec,
  type SessionState,
} from '../core/session';
import { getExecutionPolicy, HEARTBEAT_TIMEOUT } from './activities';
import {
  dropWorkspace,
  restoreSaved,
  saveChangedWorkspace,
  type KeptWorkspace,
  type PendingSave,
} from './session-workspace';
import { checked } from './validated';

const { openSessionPod, runInSession, releaseSessionPods, countOpenSessions } = proxyActivities<SandboxActivities>({
  startToCloseTimeout: '10m',
  heartbeatTimeout: HEARTBEAT_TIMEOUT,
  retry: { initialInterval: '500ms', maximumInterval: '10s', maximumAttempts: 20 },
});

export const runUpdate = defineUpdate<SessionRunResult, [SessionRunInput]>(SESSION_HANDLERS.run);
export const closeUpdate = defineUpdate<SessionState>(SESSION_HANDLERS.close);
export const stateQuery = defineQuery<SessionState>(SESSION_HANDLERS.state);

/** What a session carries into its next run of history (continue-as-new). */
interface Carried {
  spec: SessionSpec;
  policy: ExecutionPolicy;
  state: SessionState;
  generation: number;
  launcherSeq: number;
  /** The successful runs, in order: what rebuilds the interpreter's state on a new pod. */
  replay: SessionRunInput[];
  /** The replay list's size (bytes of JSON), and how many successful runs came after it was full. */
  replayBytes?: number;
  notReplayed?: number;
  /** The workspace in the store, and how many replay entries came before its save (they are replayed before it). */
  workspace?: KeptWorkspace;
  /** A run changed the workspace: saved after its answer, before the next run. */
  pendingSave?: PendingSave;
}

/** Sessions that continue as new every SESSION_HISTORY.runsPerHistory runs and cap their replay list. */
export const BOUNDED_HISTORY = 'session-bounded-history';
/** Sessions that count the open sessions of their task queue at start and end at once past the cap. */
export const SESSION_CAP = 'session-cap';
/** Sessions that keep their workspace in the worker's store: saved after a run that changed it, restored on a new pod. */
export const SESSION_WORKSPACE = 'session-workspace';

export interface SessionInput {
  options?: SessionOptions;
  carried?: Carried;
}

export async function session(input: SessionInput = {}): Promise<SessionState> {
  const sessionId = workflowInfo().workflowId;
  let c: Carried | undefined = input.carried;
  let closeRequested = false;
  let inFlight = 0;
  let tail: Promise<unknown> = Promise.resolve();

  // The handlers come first: a run sent with the session's start must find them.
  setHandler(
    runUpdate,
    (run) => {
      inFlight++;
      // The run's id (its Update's) goes with the run's step: callers follow its live output by it.
      const runId = currentUpdateInfo()?.id;
      const mine = tail.then(async () => {
        await condition(() => c !== undefined);
        return runOne(c!, run, runId);
      });
      // The workspace a run changed is saved after its answer, before the next run (and before an idle release).
      tail = mine
        .then(() => saveChangedWorkspace(c!))
        .catch(() => undefined)
        .finally(() => inFlight--);
      return mine;
    },
    {
      validator: (run) => {
        // Refused, not run, once its caller has given up on it (the caller then says for certain it never ran).
        const late = acceptDeadlinePassed(run, Date.now());
        if (late)
          throw ApplicationFailure.create({ message: late, type: STEP_FAILURES.runExpired, nonRetryable: true });
        if (!c) return;
        refuseClosed(c.state);
        checked(() => validateSessionRun(run, c!.spec, c!.policy));
      },
    },
  );
  setHandler(closeUpdate, async () => {
    closeRequested = true;
    await condition(() => c?.state.state === 'closed');
    return c!.state;
  });
  setHandler(
    stateQuery,
    () => c?.state ?? { sessionId, state: 'open', language: DEFAULT_LANGUAGE, runs: 0, openedAt: 0 },
  );

  if (!c) {
    const policy = await getExecutionPolicy();
    const spec = checked(() => validateSessionOptions(input.options, policy));
    const state: SessionState = { sessionId, state: 'open', language: spec.language, runs: 0, openedAt: Date.now() };
    if (patched(SESSION_CAP) && policy.maxOpenSessions !== undefined) {
      // Before any run may start. This session is among those counted (or not yet visible: a burst may pass the
      // cap by a few).
      const taskQueue = workflowInfo().taskQueue;
      const open = await countOpenSessions({ taskQueue });
      if (open > policy.maxOpenSessions) {
        state.state = 'closed';
        state.closedBecause = 'limit';
        state.refused = sessionLimitMessage(open - 1, policy.maxOpenSessions, taskQueue);
        c = { spec, policy, state, generation: 0, launcherSeq: 0, replay: [] };
        await condition(allHandlersFinished);
        return state;
      }
    }
    c = { spec, policy, state, generation: 0, launcherSeq: 0, replay: [] };
  }
  const { spec, policy, state: s } = c;
  const carried = c;
  const runsAtStart = s.runs;

  // What the Temporal UI shows of the session while it runs.
  const show = () =>
    setCurrentDetails(
      `**${s.state}** · ${s.runs} run(s) · pod: ${s.pod ?? 'none (the next run gets one)'}` +
        (s.closedBecause ? ` · ended: ${s.closedBecause}` : ''),
    );
  const lifetimeEnd = s.openedAt + spec.maxLifetimeSeconds * 1000;
  const idleEnd = () => (s.lastRunAt ?? s.openedAt) + spec.idleTimeoutSeconds * 1000;
  try {
    for (;;) {
      const idleAt = s.pod && inFlight === 0 ? idleEnd() : Infinity;
      const wakeIn = Math.max(1, Math.min(lifetimeEnd, idleAt) - Date.now());
      const [runsBefore, inFlightBefore] = [s.runs, inFlight];
      show();
      await condition(() => closeRequested || s.runs !== runsBefore || inFlight !== inFlightBefore, wakeIn);
      if (closeRequested) s.closedBecause = 'closed';
      else if (Date.now() >= lifetimeEnd) s.closedBecause = 'lifetime';
      if (s.closedBecause) break;
      if (s.pod && inFlight === 0 && Date.now() >= idleEnd()) {
        // Idle: the pod goes, the session stays; its next run gets a new pod and its state back.
        inFlight++;
        tail = tail
          .then(async () => {
            if (inFlight > 1) return;
            await releaseSessionPods({ sessionId, namespace: policy.namespace });
            s.pod = undefined;
          })
          .catch(() => undefined)
          .finally(() => inFlight--);
        await condition(() => inFlight === 0);
        continue;
      }
      const longHistory =
        workflowInfo().continueAsNewSuggested ||
        (s.runs - runsAtStart >= SESSION_HISTORY.runsPerHistory && patched(BOUNDED_HISTORY));
      if (longHistory && inFlight === 0) {
        await condition(allHandlersFinished);
        await continueAsNew<typeof session>({ carried });
      }
    }
  } catch (err) {
    // Cancelled: the session ends as if closed (its pods go), and says so.
    if (!isCancellation(err)) throw err;
    s.closedBecause = 'cancelled';
  }
  s.state = 'closing';
  // Nothing stops the ending once begun: the runs in flight end, then the pods go.
  await CancellationScope.nonCancellable(async () => {
    await condition(() => inFlight === 0);
    await releaseSessionPods({ sessionId, namespace: policy.namespace });
    s.pod = undefined;
    if (c.workspace || (s.workspace && 'error' in s.workspace))
      // The store's object goes with the session (a store that stays down leaves it: said in the state).
      await dropWorkspace({ sessionId }).catch((err: Error) => {
        s.workspace = { error: `its workspace could not be deleted from the store: ${err.message}` };
      });
    s.state = 'closed';
    show();
    await condition(allHandlersFinished);
  });
  return s;
}

/** Keeps a successful run for rebuilding the state, while the replay list is under its cap (then: counts it). */
function keep(c: Carried, run: SessionRunInput): void {
  if (!patched(BOUNDED_HISTORY)) {
    c.replay.push(run);
    return;
  }
  const size = JSON.stringify(run).length;
  if (c.notReplayed || (c.replayBytes ?? 0) + size > SESSION_HISTORY.replayBytes) {
    c.notReplayed = (c.notReplayed ?? 0) + 1;
    return;
  }
  c.replay.push(run);
  c.replayBytes = (c.replayBytes ?? 0) + size;
}

function refuseClosed(s: SessionState): void {
  if (s.state !== 'open')
    throw ApplicationFailure.create({
      message: s.refused ?? `session ${s.sessionId} is ${s.state}${s.closedBecause ? ` (${s.closedBecause})` : ''}`,
      type: STEP_FAILURES.sessionClosed,
      nonRetryable: true,
    });
}

function launch(c: Carried, run: SessionRunInput, pod: string, runId?: string): Promise<SessionRunReport> {
  return runInSession({
    ...(runId !== undefined ? { runId } : {}),
    sessionId: c.state.sessionId,
    seq: ++c.launcherSeq,
    pod,
    request: validateSessionRun(run, c.spec, c.policy),
    policy: c.policy,
    idleSeconds: c.spec.idleTimeoutSeconds + SESSION_IDLE_GRACE_SECONDS,
    ...(c.spec.egress ? { egress: c.spec.egress } : {}),
  });
}

async function runOne(c: Carried, run: SessionRunInput, runId?: string): Promise<SessionRunResult> {
  const { state: s, spec, policy } = c;
  const sessionId = s.sessionId;
  refuseClosed(s);
  const request = checked(() => validateSessionRun(run, spec, policy));
  const started = Date.now();
  /** A new pod, with the session's state rebuilt on it by running its successful runs again, in order. */
  const newPod = async (): Promise<SessionRunResult['session']['restored']> => {
    const from = Date.now();
    const opened = await openSessionPod({ sessionId, generation: ++c.generation, spec, policy });
    const pod = (s.pod = opened.pod);
    const podMs = Date.now() - from;
    const replay = spec.replay === false ? [] : c.replay;
    const saved = c.workspace;
    if (replay.length === 0 && !saved) return undefined;
    // The runs up to the workspace's save, the workspace as it was then, the runs after it: files end as they were.
    const split = saved ? Math.min(saved.replayed, replay.length) : replay.length;
    const replayFrom = Date.now();
    for (const earlier of replay.slice(0, split)) await launch(c, earlier, pod);
    const workspace = saved ? await restoreSaved(c, saved, pod) : undefined;
    for (const earlier of replay.slice(split)) await launch(c, earlier, pod);
    return {
      runs: replay.length,
      ms: Date.now() - replayFrom,
      podMs,
      ...(opened.warm ? { warmPod: true } : {}),
      ...(c.notReplayed && spec.replay !== false ? { notReplayed: c.notReplayed } : {}),
      ...(workspace ? { workspace } : {}),
    };
  };
  let restored = s.pod ? undefined : await newPod();
  let report = await launch(c, run, s.pod!, runId);
  if (report.notSent) {
    // The pod was gone before the run reached it (it died between runs): nothing ran; a new pod, the state, the run.
    s.pod = undefined;
    restored = await newPod();
    report = await launch(c, run, s.pod!, runId);
  }
  const seq = ++s.runs;
  s.lastRunAt = Date.now();
  const pod = s.pod!;
  if (report.end.kind === 'infra' || report.session?.next === 'restart') s.pod = undefined;
  if (report.end.kind === 'finished' && report.end.exitCode === 0 && !report.output.trailer?.timedOut) keep(c, run);
  const result = buildResult({
    executionId: `${sessionId}#${seq}`,
    language: request.language,
    end: report.end,
    output: report.output,
    attempts: 1,
    attemptErrors: report.end.kind === 'infra' ? [report.end.error] : [],
    kubernetes: { namespace: policy.namespace, pod, image: policy.images[request.language] },
    timeline: [
      { phase: 'started', at: started, attempt: 1 },
      { phase: 'claimed', at: report.sentAt, attempt: 1 },
      { phase: 'outputCollected', at: report.output.at, attempt: 1 },
    ],
    sandbox: 'session',
    ...(report.network ? { network: report.network } : {}),
  });
  const note = report.session;
  const digest = note?.workspace;
  // Saved when it differs from the last save (or, before any, from the sandbox's own start: nothing to keep yet).
  const kept = c.workspace?.sig ?? digest?.base;
  if (digest && (policy.workspaceMaxBytes ?? 0) > 0 && digest.sig !== kept && patched(SESSION_WORKSPACE)) {
    if (digest.sig) c.pendingSave = { seq, sig: digest.sig, pod, replayed: c.replay.length };
    else s.workspace = { error: `the workspace has more than ${digest.entries - 1} entries: it is not kept` };
  }
  const why = restored ? 'the session came to a new pod' : (note?.why ?? undefined);
  return {
    ...result,
    sessionId,
    seq,
    session: {
      pod,
      interpreter: restored ? 'restarted' : (note?.interpreter ?? 'started'),
      ...(why ? { why } : {}),
      ...(restored ? { restored } : {}),
    },
  };
}

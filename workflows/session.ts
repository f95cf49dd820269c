/**
 * session: one durable session (workflow id = session id). It owns one hardened pod at a time whose launcher keeps
 * one interpreter for all runs; each run is an Update, run one at a time in the order received. After a run that
 * changed the session (its files, its interpreter's state: the launcher's checkpoint), a snapshot of it goes to the
 * worker's store. A pod released on idle, or lost, is replaced at the next run, and the newest snapshot is put back
 * on it (files and state; the runs after it, if any, run again); without one, the interpreter's state is rebuilt by
 * running the session's earlier successful runs again, in order (their output discarded). The run's result says
 * which. A fork (an Update) starts new sessions from the snapshot as of one of its runs. Its lifetime ends it; close
 * ends it; either way its pods and snapshots are deleted before it completes. Long sessions continue-as-new.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  currentUpdateInfo,
  isCancellation,
  ParentClosePolicy,
  patched,
  defineQuery,
  defineUpdate,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  allHandlersFinished,
  startChild,
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
  checkpointsState,
  SESSION_HANDLERS,
  SESSION_HISTORY,
  SESSION_IDLE_GRACE_SECONDS,
  sessionBoundSeconds,
  sessionLimitMessage,
  validateFork,
  validateSessionOptions,
  validateSessionRun,
  type ForkOptions,
  type SessionOptions,
  type SessionRunInput,
  type SessionRunResult,
  type SessionSpec,
  type SessionState,
} from '../core/session';
import { snapshotAt, type Snapshot } from '../core/workspace';
import { getExecutionPolicy, HEARTBEAT_TIMEOUT } from './activities';
import {
  copySnapshot,
  dropWorkspace,
  restoreSaved,
  saveChangedWorkspace,
  type KeptWorkspace,
  type PendingSave,
  type PendingSnapshot,
} from './session-workspace';
import { checked } from './validated';

const { openSessionPod, runInSession, releaseSessionPods, countOpenSessions } = proxyActivities<SandboxActivities>({
  startToCloseTimeout: '7h',
  heartbeatTimeout: HEARTBEAT_TIMEOUT,
  retry: { initialInterval: '500ms', maximumInterval: '10s', maximumAttempts: 20 },
});

export const runUpdate = defineUpdate<SessionRunResult, [SessionRunInput]>(SESSION_HANDLERS.run);
export const closeUpdate = defineUpdate<SessionState>(SESSION_HANDLERS.close);
export const forkUpdate = defineUpdate<string[], [ForkOptions]>(SESSION_HANDLERS.fork);
export const stateQuery = defineQuery<SessionState>(SESSION_HANDLERS.state);

/** What a session carries into its next run of history (continue-as-new). */
interface Carried {
  spec: SessionSpec;
  policy: ExecutionPolicy;
  state: SessionState;
  generation: number;
  launcherSeq: number;
  /** The successful runs, in order (with their seq, since snapshots): what rebuilds the state where no snapshot does. */
  replay: ReplayEntry[];
  /** The replay list's size (bytes of JSON), and how many successful runs came after it was full. */
  replayBytes?: number;
  notReplayed?: number;
  /** The workspace in the store, and how many replay entries came before its save (they are replayed before it). */
  workspace?: KeptWorkspace;
  /** A run changed the workspace: saved after its answer, before the next run. */
  pendingSave?: PendingSave;
  /** Since snapshots: the snapshots kept (oldest first), and the run whose snapshot is to be decided on. */
  snapshots?: Snapshot[];
  pendingSnapshot?: PendingSnapshot;
  /** How many forks this session has started (their ids are numbered: no draw of the workflow's randomness). */
  forks?: number;
}

type ReplayEntry = SessionRunInput & { seq?: number };

/** A fork's start: the parent's spec, the snapshot it starts from (copied as its own, seq 0), the runs after it. */
interface ForkStart {
  parent: string;
  atRun: number;
  spec: SessionSpec;
  snapshot?: Snapshot;
  replay: ReplayEntry[];
  notReplayed?: number;
}

/** Sessions that continue as new every SESSION_HISTORY.runsPerHistory runs and cap their replay list. */
export const BOUNDED_HISTORY = 'session-bounded-history';
/** Sessions that count the open sessions of their task queue at start and end at once past the cap. */
export const SESSION_CAP = 'session-cap';
/** Sessions that keep their workspace in the worker's store: saved after a run that changed it, restored on a new pod. */
export const SESSION_WORKSPACE = 'session-workspace';
/**
 * Sessions that checkpoint their interpreter's state after each run and keep snapshots (files and state) per run,
 * restore a new pod from the newest (replay in one step, for what it does not hold), leave a run that made the
 * interpreter unusable out of their replay, and fork.
 */
export const SESSION_SNAPSHOTS = 'session-snapshots';

export interface SessionInput {
  options?: SessionOptions;
  carried?: Carried;
  /** A fork's start (a session forked it: its snapshot is this one's first). */
  fork?: ForkStart;
}

export async function session(input: SessionInput = {}): Promise<SessionState> {
  const sessionId = workflowInfo().workflowId;
  let c: Carried | undefined = input.carried;
  let closeRequested = false;
  let inFlight = 0;
  /** Moving to a new history: runs and forks are refused for that moment (the client sends them again). */
  let moving = false;
  const refuseWhileMoving = () => {
    if (moving)
      throw ApplicationFailure.create({
        message: 'the session is moving to a new history; send the run again',
        type: STEP_FAILURES.sessionMoving,
        nonRetryable: true,
      });
  };
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
        refuseWhileMoving();
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
    forkUpdate,
    (options) => {
      inFlight++;
      // After the runs before it (and their snapshots): a fork of the last run has its state.
      const mine = tail.then(async () => {
        await condition(() => c !== undefined);
        return forkSession(c!, options);
      });
      tail = mine.catch(() => undefined).finally(() => inFlight--);
      return mine;
    },
    {
      validator: (options) => {
        refuseWhileMoving();
        if (!c) return;
        refuseClosed(c.state);
        checked(() => validateFork(options, c!.state.runs));
      },
    },
  );
  setHandler(
    stateQuery,
    () => c?.state ?? { sessionId, state: 'open', language: DEFAULT_LANGUAGE, runs: 0, openedAt: 0 },
  );

  if (!c && input.fork) {
    // A fork: the parent's spec; its first run restores the snapshot it was given (its own copy).
    const policy = await getExecutionPolicy();
    const f = input.fork;
    const state: SessionState = {
      sessionId,
      state: 'open',
      language: f.spec.language,
      runs: 0,
      openedAt: Date.now(),
      forkedFrom: { sessionId: f.parent, atRun: f.atRun },
    };
    c = {
      spec: f.spec,
      policy,
      state,
      generation: 0,
      launcherSeq: 0,
      replay: f.replay,
      snapshots: f.snapshot ? [f.snapshot] : [],
      ...(f.notReplayed ? { notReplayed: f.notReplayed } : {}),
    };
  }
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
      if (longHistory && (inFlight === 0 || patched(SESSION_SNAPSHOTS))) {
        // Runs that keep coming would never leave a moment without one in flight: new ones wait out the move.
        moving = true;
        await condition(() => closeRequested || (inFlight === 0 && allHandlersFinished()));
        if (!closeRequested) await continueAsNew<typeof session>({ carried });
        moving = false;
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
    if (c.workspace || c.snapshots || (s.workspace && 'error' in s.workspace))
      // The store's objects go with the session (a store that stays down leaves them: said in the state).
      await dropWorkspace({ sessionId, ...(c.snapshots ? { snapshots: true } : {}) }).catch((err: Error) => {
        s.workspace = { error: `its workspace could not be deleted from the store: ${err.message}` };
      });
    s.state = 'closed';
    show();
    await condition(allHandlersFinished);
  });
  return s;
}

/** Keeps a successful run for rebuilding the state, while the replay list is under its cap (then: counts it). */
function keep(c: Carried, run: SessionRunInput, seq: number, snapshots: boolean): void {
  const entry: ReplayEntry = snapshots ? { ...run, seq } : run;
  if (!patched(BOUNDED_HISTORY)) {
    c.replay.push(entry);
    return;
  }
  const size = JSON.stringify(entry).length;
  if (c.notReplayed || (c.replayBytes ?? 0) + size > SESSION_HISTORY.replayBytes) {
    c.notReplayed = (c.notReplayed ?? 0) + 1;
    return;
  }
  c.replay.push(entry);
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

function launch(
  c: Carried,
  run: SessionRunInput,
  pod: string,
  runId?: string,
  extra: { op?: 'restore' | 'replay'; codes?: string[]; watchSeconds?: number; checkpoint?: boolean } = {},
): Promise<SessionRunReport> {
  const { checkpoint, ...ops } = extra;
  return runInSession({
    ...(runId !== undefined ? { runId } : {}),
    sessionId: c.state.sessionId,
    seq: ++c.launcherSeq,
    pod,
    request: validateSessionRun(run, c.spec, c.policy),
    policy: c.policy,
    idleSeconds: c.spec.idleTimeoutSeconds + SESSION_IDLE_GRACE_SECONDS,
    ...(c.spec.egress ? { egress: c.spec.egress } : {}),
    ...ops,
    ...(checkpoint ? { checkpoint: { maxBytes: c.policy.workspaceMaxBytes ?? 0 } } : {}),
  });
}

/** Runs `runs` again in the pod: in one step when none has input files (they go with their own run's task). */
async function replayRuns(c: Carried, runs: ReplayEntry[], pod: string, oneStep: boolean): Promise<void> {
  if (runs.length === 0) return;
  if (!oneStep || runs.some((r) => r.files?.length)) {
    for (const earlier of runs) await launch(c, earlier, pod);
    return;
  }
  const each = Math.max(...runs.map((r) => r.timeoutSeconds ?? c.spec.timeoutSeconds));
  await launch(c, { code: '# replay', timeoutSeconds: each }, pod, undefined, {
    op: 'replay',
    codes: runs.map((r) => r.code),
    watchSeconds: Math.min(each * runs.length, 6 * 3600),
  });
}

/**
 * A new pod's state from the session's newest snapshot: its files and its interpreter's checkpoint put back, then the
 * runs after it run again (one step). Where the state cannot be loaded, the runs it held run again instead.
 */
async function restoreSnapshot(
  c: Carried,
  snap: Snapshot,
  pod: string,
): Promise<Pick<NonNullable<SessionRunResult['session']['restored']>, 'runs' | 'workspace' | 'state'>> {
  const after = c.replay.slice(snap.replayed);
  const workspace = await restoreSaved(c, snap, pod, true);
  if ('error' in workspace) {
    // Neither its files nor its state came back: the runs rebuild what they can.
    await replayRuns(c, c.replay, pod, true);
    return { runs: c.replay.length, workspace, state: { error: `its snapshot was not put back (${workspace.error})` } };
  }
  let state: NonNullable<SessionRunResult['session']['restored']>['state'];
  if (snap.state) {
    const from = Date.now();
    const r = await launch(c, { code: '# restore' }, pod, undefined, { op: 'restore' });
    const report = r.session?.state;
    state =
      r.end.kind === 'finished' && r.end.exitCode === 0 && report && !report.error
        ? {
            seq: snap.seq,
            names: report.names ?? 0,
            ms: Date.now() - from,
            ...(report.skipped?.length ? { skipped: report.skipped } : {}),
          }
        : { error: report?.error ?? (r.end.kind === 'infra' ? r.end.error.message : 'it was not loaded') };
  }
  if (state && 'error' in state) {
    // The runs the snapshot held run again, its files put back over theirs, then the runs after it.
    await replayRuns(c, c.replay.slice(0, snap.replayed), pod, true);
    await restoreSaved(c, snap, pod, true);
    await replayRuns(c, after, pod, true);
    return { runs: c.replay.length, workspace, state };
  }
  await replayRuns(c, after, pod, true);
  return { runs: after.length, workspace, ...(state ? { state } : {}) };
}

/** New sessions with the state of this one as of a run: each starts from its own copy of that run's snapshot. */
async function forkSession(c: Carried, options: ForkOptions | undefined): Promise<string[]> {
  refuseClosed(c.state);
  const { atRun, count } = checked(() => validateFork(options, c.state.runs));
  const snap = snapshotAt(c.snapshots ?? [], atRun);
  // The runs after the snapshot up to atRun (their seq known), or all up to it without one.
  const replay = c.replay
    .filter((r) => (r.seq === undefined ? !snap : r.seq > (snap?.seq ?? 0) && r.seq <= atRun))
    .map(({ seq: _seq, ...r }) => r);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    c.forks = (c.forks ?? 0) + 1;
    const id = `${c.state.sessionId}.fork-${c.forks}`;
    if (snap)
      await copySnapshot({ from: { sessionId: c.state.sessionId, seq: snap.seq }, to: { sessionId: id, seq: 0 } });
    await startChild(session, {
      workflowId: id,
      taskQueue: workflowInfo().taskQueue,
      // A fork is a session of its own: it lives on when this one ends.
      parentClosePolicy: ParentClosePolicy.ABANDON,
      workflowExecutionTimeout: `${sessionBoundSeconds(c.spec, c.policy)}s`,
      args: [
        {
          fork: {
            parent: c.state.sessionId,
            atRun,
            spec: c.spec,
            ...(snap ? { snapshot: { ...snap, seq: 0, replayed: 0 } } : {}),
            replay,
            ...(c.notReplayed && atRun === c.state.runs ? { notReplayed: c.notReplayed } : {}),
          },
        },
      ],
    });
    ids.push(id);
  }
  return ids;
}

async function runOne(c: Carried, run: SessionRunInput, runId?: string): Promise<SessionRunResult> {
  const { state: s, spec, policy } = c;
  const sessionId = s.sessionId;
  refuseClosed(s);
  const request = checked(() => validateSessionRun(run, spec, policy));
  const snapshots = patched(SESSION_SNAPSHOTS);
  if (snapshots) c.snapshots ??= [];
  const keepsSnapshots = snapshots && (policy.workspaceMaxBytes ?? 0) > 0;
  const started = Date.now();
  /** A new pod, with the session's state back on it: from its newest snapshot, else by running its runs again. */
  const newPod = async (): Promise<SessionRunResult['session']['restored']> => {
    const from = Date.now();
    const opened = await openSessionPod({ sessionId, generation: ++c.generation, spec, policy });
    const pod = (s.pod = opened.pod);
    const podMs = Date.now() - from;
    const replay = spec.replay === false ? [] : c.replay;
    const snap = c.snapshots?.[c.snapshots.length - 1];
    const saved = c.workspace;
    if (replay.length === 0 && !saved && !snap) return undefined;
    const replayFrom = Date.now();
    let how: Pick<NonNullable<SessionRunResult['session']['restored']>, 'runs' | 'workspace' | 'state'>;
    if (snap && spec.replay !== false) how = await restoreSnapshot(c, snap, pod);
    else if (snap) how = { runs: 0, workspace: await restoreSaved(c, snap, pod, true) };
    else {
      // The runs up to the workspace's save, the workspace as it was then, the runs after it: files end as they were.
      const split = saved ? Math.min(saved.replayed, replay.length) : replay.length;
      await replayRuns(c, replay.slice(0, split), pod, snapshots);
      const workspace = saved ? await restoreSaved(c, saved, pod) : undefined;
      await replayRuns(c, replay.slice(split), pod, snapshots);
      how = { runs: replay.length, ...(workspace ? { workspace } : {}) };
    }
    return {
      ...how,
      ms: Date.now() - replayFrom,
      podMs,
      ...(opened.warm ? { warmPod: true } : {}),
      ...(c.notReplayed && spec.replay !== false ? { notReplayed: c.notReplayed } : {}),
    };
  };
  let restored = s.pod ? undefined : await newPod();
  // Without replay a new pod gets the files alone: no state to keep.
  const checkpoint = keepsSnapshots && spec.replay !== false && checkpointsState(request.language);
  let report = await launch(c, run, s.pod!, runId, { checkpoint });
  if (report.notSent) {
    // The pod was gone before the run reached it (it died between runs): nothing ran; a new pod, the state, the run.
    s.pod = undefined;
    restored = await newPod();
    report = await launch(c, run, s.pod!, runId, { checkpoint });
  }
  const seq = ++s.runs;
  s.lastRunAt = Date.now();
  const pod = s.pod!;
  const note = report.session;
  // Lost, or (before snapshots) an interpreter to restart: the next run gets a new pod. Since snapshots, the launcher
  // restarts the interpreter in the pod with the last checkpoint.
  if (report.end.kind === 'infra' || report.podGone || (note?.next === 'restart' && !snapshots)) s.pod = undefined;
  // A run that left the interpreter unusable (its next run restarts it) is not one to run again on a new pod.
  const unusable = snapshots && note?.next === 'restart';
  if (report.end.kind === 'finished' && report.end.exitCode === 0 && !report.output.trailer?.timedOut && !unusable)
    keep(c, run, seq, snapshots);
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
  const digest = note?.workspace;
  if (keepsSnapshots) {
    // Decided after the answer: a snapshot when the run changed the files or the state.
    if (digest && s.pod)
      c.pendingSnapshot = {
        seq,
        launcherSeq: c.launcherSeq,
        pod,
        sig: digest.sig,
        base: digest.base ?? null,
        checkpointed: checkpoint,
        replayed: c.replay.length,
      };
  } else {
    // Saved when it differs from the last save (or, before any, from the sandbox's own start: nothing to keep yet).
    const kept = c.workspace?.sig ?? digest?.base;
    if (digest && (policy.workspaceMaxBytes ?? 0) > 0 && digest.sig !== kept && patched(SESSION_WORKSPACE)) {
      if (digest.sig) c.pendingSave = { seq, sig: digest.sig, pod, replayed: c.replay.length };
      else s.workspace = { error: `the workspace has more than ${digest.entries - 1} entries: it is not kept` };
    }
  }
  const why = restored ? 'the session came to a new pod' : (note?.why ?? undefined);
  const back = note?.state;
  return {
    ...result,
    sessionId,
    seq,
    session: {
      pod,
      interpreter: restored ? 'restarted' : (note?.interpreter ?? 'started'),
      ...(why ? { why } : {}),
      ...(restored ? { restored } : {}),
      ...(back && !restored
        ? {
            state: back.error
              ? { error: back.error }
              : { names: back.names ?? 0, ...(back.skipped?.length ? { skipped: back.skipped } : {}) },
          }
        : {}),
      ...(note?.leftover ? { leftover: note.leftover } : {}),
    },
  };
}

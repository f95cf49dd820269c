/**
 * Sessions in pure terms: what opening one asks for, its defaults and limits, a run's input, the names and labels of
 * a session's pods, and what a run into a session answers. A session is a workflow (workflows/session.ts) that owns
 * one hardened pod at a time, whose launcher runs every run in one interpreter (launcher.py --session).
 */
import {
  DEFAULT_LANGUAGE,
  isLanguage,
  languageChoices,
  LANGUAGES,
  SESSION_LANGUAGES,
  type LanguageSpec,
} from './languages';
import type { V1Pod } from '@kubernetes/client-node';
import { egressMetadata, type EgressRule, type NetworkOptions } from './egress';
import { hardenedPodSpec, programEnv, type SandboxNetwork } from './manifests';
import { ANNOTATIONS, MANAGED_BY, LABELS, hash16 } from './names';
import { fitsPool, podAgeSeconds, waitingLauncher } from './pool';
import type { ExecutionPolicy } from './policy';
import type { ExecutionResult, InputFile, Language } from './types';

export { SESSION_LANGUAGES };
import { InvalidInputError, validateInput, type ExecutionRequest } from './validate';

/** What opening a session asks for (everything optional). */
export interface SessionOptions {
  language?: Language;
  /** Each run's default time limit, seconds (a run may ask for another, within the policy's cap). */
  timeoutSeconds?: number;
  limits?: { cpu?: string; memory?: string };
  env?: Record<string, string>;
  /**
   * After this long without a run, seconds, the session's pod is released; the session stays open, and its next run
   * gets a new pod with the state rebuilt (the result says so).
   */
  idleTimeoutSeconds?: number;
  /** The session ends this long after it opened, whatever it does, seconds. */
  maxLifetimeSeconds?: number;
  /**
   * On a new pod, rebuild the interpreter's state by running the session's earlier successful runs again, in order
   * (default true). false: a new pod starts with a fresh interpreter, and only the workspace's files come back (from
   * the worker's workspace store).
   */
  replay?: boolean;
  /**
   * Network egress for the session's life: the domains its runs may reach through the worker's egress gateway
   * (within the worker's ceiling, DS_EGRESS_ALLOW). Without it the session's sandbox reaches nothing.
   */
  network?: NetworkOptions;
}

/** A session's options with every default applied and every limit checked. */
export interface SessionSpec {
  language: Language;
  timeoutSeconds: number;
  cpu: string;
  memory: string;
  env: Record<string, string>;
  idleTimeoutSeconds: number;
  maxLifetimeSeconds: number;
  /** Absent in sessions opened before the option: true. */
  replay?: boolean;
  /** The domains its runs may reach (absent: none). */
  egress?: EgressRule[];
}

/** One run's input. */
export interface SessionRunInput {
  code: string;
  timeoutSeconds?: number;
  files?: InputFile[];
  /**
   * The latest moment (ms since the epoch) the session may take the run up; the session refuses it after that. A
   * caller that gave up waiting for the run to be taken up (no worker served the session) can then say for certain
   * that it never runs. Set by the client.
   */
  acceptBy?: number;
}

/** Why a run came too late: refused by the session, as the caller that sent it has given up on it. */
export function acceptDeadlinePassed(run: unknown, now: number): string | undefined {
  const by = (run as SessionRunInput | undefined)?.acceptBy;
  if (typeof by !== 'number' || now <= by) return undefined;
  return `the run reached the session ${Math.round((now - by) / 1000)} s after its caller stopped waiting for it to be taken up (acceptBy); it was not run`;
}

export const SESSION_DEFAULTS = { idleTimeoutSeconds: 600, maxLifetimeSeconds: 3600 } as const;

/**
 * What keeps a long session's workflow bounded: it continues as new after this many runs in one history (or sooner,
 * when Temporal suggests it), and the runs kept for rebuilding its state (their code and input files, carried from
 * history to history) stop growing at this many bytes: runs after that are not replayed, and a restore says so.
 */
export const SESSION_HISTORY = { runsPerHistory: 100, replayBytes: 512 * 1024 } as const;
export const SESSION_LIMITS = {
  maxIdleTimeoutSeconds: 24 * 3600,
  maxLifetimeSeconds: 7 * 24 * 3600,
  /** Forks made by one call. */
  maxForks: 10,
} as const;

/** The workflow's update, query and signal names. */
export const SESSION_HANDLERS = { run: 'run', close: 'close', state: 'state', fork: 'fork' } as const;

/**
 * Whether a session of this language has its interpreter's state checkpointed after each run and restored on a new
 * pod (its LanguageSpec's `checkpointsState`); the others' state is rebuilt by running their earlier runs again.
 */
export function checkpointsState(language: Language): boolean {
  return (LANGUAGES[language] as LanguageSpec).checkpointsState === true;
}

/** What forking a session asks for: the state after which of its runs (default: its last), and how many copies. */
export interface ForkOptions {
  atRun?: number;
  count?: number;
}

/** A fork's request with its defaults applied, checked against the session as it is. */
export function validateFork(options: unknown, runs: number): { atRun: number; count: number } {
  const o = (options ?? {}) as ForkOptions;
  if (typeof o !== 'object' || Array.isArray(o)) throw new InvalidInputError('options', 'object', 'must be an object');
  const count = o.count ?? 1;
  if (!Number.isInteger(count) || count < 1 || count > SESSION_LIMITS.maxForks)
    throw new InvalidInputError(
      'count',
      `1 to ${SESSION_LIMITS.maxForks}`,
      `must be a whole number from 1 to ${SESSION_LIMITS.maxForks}`,
    );
  const atRun = o.atRun ?? runs;
  if (!Number.isInteger(atRun) || atRun < 0 || atRun > runs)
    throw new InvalidInputError(
      'atRun',
      `0 to ${runs}`,
      `must be a run of the session: 0 (before its first) to ${runs} (its last)`,
    );
  return { atRun, count };
}

function seconds(field: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1)
    throw new InvalidInputError(field, 'a whole number of seconds ≥ 1', `must be a whole number of seconds ≥ 1`);
  if (value > max) throw new InvalidInputError(field, `max ${max}`, `is ${value}, more than ${max}`);
  return value;
}

/** Checks a session's options against the policy; throws InvalidInputError naming the field and limit it broke. */
export function validateSessionOptions(options: unknown, policy: ExecutionPolicy): SessionSpec {
  const o = (options ?? {}) as SessionOptions;
  if (typeof o !== 'object' || Array.isArray(o)) throw new InvalidInputError('options', 'object', 'must be an object');
  const language = o.language ?? DEFAULT_LANGUAGE;
  if (!isLanguage(language) || !SESSION_LANGUAGES.includes(language))
    throw new InvalidInputError(
      'language',
      `one of ${SESSION_LANGUAGES.join(', ')}`,
      `sessions keep an interpreter of ${SESSION_LANGUAGES.join(', ')} (one-shot runs take ${languageChoices()})`,
    );
  if (o.replay !== undefined && typeof o.replay !== 'boolean')
    throw new InvalidInputError('replay', 'true or false', 'must be true or false');
  // The run-level checks (time limit, limits, env) are the one-shot ones.
  const probe = validateInput(
    { code: '0', language, timeoutSeconds: o.timeoutSeconds, limits: o.limits, env: o.env, network: o.network },
    policy,
  );
  return {
    language,
    timeoutSeconds: probe.timeoutSeconds,
    cpu: probe.cpu,
    memory: probe.memory,
    env: probe.env,
    idleTimeoutSeconds: seconds(
      'idleTimeoutSeconds',
      o.idleTimeoutSeconds,
      SESSION_DEFAULTS.idleTimeoutSeconds,
      SESSION_LIMITS.maxIdleTimeoutSeconds,
    ),
    maxLifetimeSeconds: seconds(
      'maxLifetimeSeconds',
      o.maxLifetimeSeconds,
      SESSION_DEFAULTS.maxLifetimeSeconds,
      SESSION_LIMITS.maxLifetimeSeconds,
    ),
    replay: o.replay !== false,
    ...(probe.egress ? { egress: probe.egress } : {}),
  };
}

/** A run's request: the one-shot checks, with the session's language, limits and env. */
export function validateSessionRun(input: unknown, spec: SessionSpec, policy: ExecutionPolicy): ExecutionRequest {
  const i = (input ?? {}) as SessionRunInput;
  return validateInput(
    {
      code: i.code,
      language: spec.language,
      timeoutSeconds: i.timeoutSeconds ?? spec.timeoutSeconds,
      files: i.files,
      limits: { cpu: spec.cpu, memory: spec.memory },
      env: spec.env,
    },
    policy,
  );
}

/** A session's pod: one name per session and pod generation (a lost or released pod's successor gets the next). */
export function sessionPodName(sessionId: string, generation: number): string {
  return `ds-session-${hash16(sessionId)}-${generation}`;
}

export function sessionLabels(sessionId: string): Record<string, string> {
  return { [LABELS.managedBy]: MANAGED_BY, [LABELS.session]: hash16(sessionId) };
}

export function sessionSelector(sessionId: string): string {
  return Object.entries(sessionLabels(sessionId))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

/** How long past its idle timeout a session pod whose workflow is gone ends itself (the launcher's own idle limit). */
export const SESSION_IDLE_GRACE_SECONDS = 60;

/** A session's pod: the hardened sandbox of a one-shot run, with a launcher that keeps one interpreter for all runs. */
export function buildSessionPod(args: {
  sessionId: string;
  generation: number;
  spec: SessionSpec;
  policy: ExecutionPolicy;
  launcherSource: string;
  /** The session's egress: its pod carries it for the gateway (none without). */
  network?: SandboxNetwork;
}): V1Pod {
  const { spec, policy } = args;
  const egress = egressMetadata(args.network?.egress);
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: sessionPodName(args.sessionId, args.generation),
      namespace: policy.namespace,
      labels: {
        ...sessionLabels(args.sessionId),
        [LABELS.sessionGeneration]: String(args.generation),
        ...egress.labels,
      },
      annotations: {
        [ANNOTATIONS.sessionId]: args.sessionId,
        [ANNOTATIONS.language]: spec.language,
        [ANNOTATIONS.runsOnce]: 'true',
        ...egress.annotations,
      },
    },
    spec: hardenedPodSpec(policy, {
      image: policy.images[spec.language],
      command: waitingLauncher('session', args.launcherSource, spec.idleTimeoutSeconds + SESSION_IDLE_GRACE_SECONDS),
      env: programEnv(spec.language),
      cpu: spec.cpu,
      memory: spec.memory,
      sandboxVolume: { emptyDir: { sizeLimit: '8Mi' } },
      stdin: 'many',
      // The server-side backstop: the kubelet ends the pod past the session's lifetime even if nothing of ours is left.
      activeDeadlineSeconds: sessionPodDeadlineSeconds(spec, policy),
    }),
  };
}

/**
 * How long a session's workflow may stay open on the server, from its start: its lifetime, and room for the end
 * (its pods' release). The server ends it there (the workflow execution timeout), so a session that no worker ever
 * serves does not stay open for good; one that closes by itself never gets near it.
 */
export function sessionBoundSeconds(spec: Pick<SessionSpec, 'maxLifetimeSeconds'>, policy: ExecutionPolicy): number {
  return spec.maxLifetimeSeconds + 2 * policy.startupAllowanceSeconds + 60;
}

/** How long a session's pod may live from its start: the session's whole lifetime, and the startup allowance. */
export function sessionPodDeadlineSeconds(spec: SessionSpec, policy: ExecutionPolicy): number {
  return spec.maxLifetimeSeconds + policy.startupAllowanceSeconds;
}

/**
 * Whether a session can take its pod from the warm pool: a pool pod has the default limits, and its kubelet deadline
 * (which a claim can only lower) must leave room for the session's lifetime.
 */
export function poolPodFitsSession(pod: V1Pod, spec: SessionSpec, policy: ExecutionPolicy, now: number): boolean {
  const needed = podAgeSeconds(pod, now) + sessionPodDeadlineSeconds(spec, policy);
  return (
    fitsPool({ cpu: spec.cpu, memory: spec.memory }, policy) &&
    (pod.spec?.activeDeadlineSeconds === undefined || pod.spec.activeDeadlineSeconds >= needed)
  );
}

/**
 * The claim of a pool pod for a session: the same single conditional write as a one-shot claim (its observed
 * resourceVersion: of two claims exactly one succeeds), which makes the pod the session's: the session's labels and
 * annotation in place of the pool's (the pool no longer counts it, the reconciler owns it by the session), and the
 * session's deadline. The launcher, waiting in warm mode, becomes the session's with its first run.
 */
export function sessionClaimPatch(
  pod: V1Pod,
  args: {
    sessionId: string;
    generation: number;
    spec: SessionSpec;
    policy: ExecutionPolicy;
    now: number;
    network?: SandboxNetwork;
  },
): object {
  const egress = egressMetadata(args.network?.egress);
  return {
    metadata: {
      resourceVersion: pod.metadata!.resourceVersion,
      labels: {
        [LABELS.pool]: null,
        [LABELS.poolState]: null,
        [LABELS.template]: null,
        ...sessionLabels(args.sessionId),
        [LABELS.sessionGeneration]: String(args.generation),
        ...egress.labels,
      },
      annotations: {
        [ANNOTATIONS.poolOwner]: null,
        [ANNOTATIONS.sessionId]: args.sessionId,
        [ANNOTATIONS.language]: args.spec.language,
        // Only pods of the claiming worker's own template are claimed: their launcher is its own.
        [ANNOTATIONS.runsOnce]: 'true',
        ...egress.annotations,
      },
    },
    spec: { activeDeadlineSeconds: podAgeSeconds(pod, args.now) + sessionPodDeadlineSeconds(args.spec, args.policy) },
  };
}

/** What a run into a session answers: the one-shot result, plus where it ran in the session. */
export interface SessionRunResult extends ExecutionResult {
  sessionId: string;
  /** The run's number in the session, from 1. */
  seq: number;
  session: {
    /** The interpreter the run ran in: started for it, kept from the run before, or restarted (and why). */
    interpreter: 'started' | 'kept' | 'restarted';
    why?: string;
    pod: string;
    /** The run came to a new pod (after idle, or a lost pod): the earlier successful runs were run again first. */
    /**
     * Rebuilt on a new pod: how many earlier runs ran again and in how long (ms), how long the new pod took to be
     * ready (podMs, since the run was taken up), whether it was a warm pool pod, and how many runs past the replay
     * cap were not run again.
     */
    restored?: {
      runs: number;
      ms: number;
      podMs?: number;
      warmPod?: boolean;
      notReplayed?: number;
      /** The workspace put back from the store (as saved after run `seq`), or why it could not be. */
      workspace?: { bytes: number; seq: number; ms: number } | { error: string };
      /**
       * The interpreter's state loaded from the snapshot after run `seq` (its names; what the checkpoint could not
       * hold, named, is not there), or why it could not be (then its runs were run again instead).
       */
      state?: { seq: number; names: number; ms: number; skipped?: string[] } | { error: string };
    };
    /** The interpreter's state came back from its last checkpoint after a restart in the pod (names), or why not. */
    state?: { names: number; skipped?: string[] } | { error: string };
    /** Output the interpreter wrote between the run before and this one (a thread still printing): counted. */
    leftover?: { bytes: number; text: string };
  };
}

/** What the session workflow reports of itself (its query). */
export interface SessionState {
  sessionId: string;
  state: 'open' | 'closing' | 'closed';
  language: Language;
  runs: number;
  pod?: string;
  openedAt: number;
  lastRunAt?: number;
  closedBecause?: 'closed' | 'lifetime' | 'cancelled' | 'limit';
  /** Why a session refused at its start (`limit`) was refused. */
  refused?: string;
  /** The workspace in the worker's store: as saved after run `seq` (its archive's bytes), or why the last save failed. */
  workspace?: { seq: number; bytes: number } | { error: string };
  /** The snapshots kept (after which run, their bytes, whether the interpreter's state is in them): what a fork can
   * start from. */
  snapshots?: { seq: number; bytes: number; state: boolean }[];
  /** A fork: the session and run it was forked from. */
  forkedFrom?: { sessionId: string; atRun: number };
}

/** The query that finds a task queue's open sessions (Temporal's visibility). */
export function openSessionsQuery(taskQueue: string): string {
  return `WorkflowType = 'session' AND ExecutionStatus = 'Running' AND TaskQueue = '${taskQueue}'`;
}

/** What a session refused for the cap on open sessions says. */
export function sessionLimitMessage(open: number, limit: number, taskQueue: string): string {
  return `SessionLimit: ${open} sessions are open on task queue ${taskQueue}, the limit is ${limit} (DS_MAX_OPEN_SESSIONS); close one (Session.close, \`durable-sandbox session close\`) or wait for one to end`;
}

/** What a reader (a model, a person) should know of a session run beyond its output: a restored or restarted state. */
export function sessionRunNotes(r: Pick<SessionRunResult, 'session'>): string[] {
  const notes: string[] = [];
  const { restored, interpreter, why } = r.session;
  if (restored) {
    const ws = restored.workspace;
    const files = !ws
      ? ''
      : 'error' in ws
        ? `; its files could not be restored from the store (${ws.error})`
        : `; its files were restored as they were after run ${ws.seq}`;
    const st = restored.state;
    const loaded =
      st && !('error' in st)
        ? `its state was loaded as it was after run ${st.seq} (${st.names} name(s) in ${st.ms} ms${
            st.skipped?.length ? `; not kept: ${st.skipped.join(', ')}` : ''
          })${restored.runs > 0 ? `, then its ${restored.runs} later run(s) ran again` : ''}`
        : undefined;
    const rebuilt =
      loaded ??
      (restored.runs > 0
        ? `its state was rebuilt by running its ${restored.runs} earlier run(s) again in ${restored.ms} ms${
            st && 'error' in st ? ` (its saved state could not be loaded: ${st.error})` : ''
          }`
        : 'its interpreter starts afresh (variables and imports are gone)');
    notes.push(
      `[the session's sandbox was replaced; ${rebuilt}` +
        files +
        (restored.notReplayed
          ? `; the ${restored.notReplayed} run(s) after those were past the replay cap and were not run again, so what they defined is gone]`
          : ']'),
    );
  }
  const back = r.session.state;
  if (interpreter === 'restarted' && !restored)
    notes.push(
      `[the interpreter was restarted${why ? ` (${why})` : ''}; files were kept, ${
        back && !('error' in back)
          ? `its state came back as of its last checkpoint (${back.names} name(s))`
          : 'variables were not'
      }]`,
    );
  if (r.session.leftover)
    notes.push(
      `[${r.session.leftover.bytes} bytes of output came between runs (a thread of an earlier run still writing); not shown]`,
    );
  return notes;
}

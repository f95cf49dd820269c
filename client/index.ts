/**
 * The typed client an agent backend uses: start an execution (idempotent by execution id), wait for its result,
 * look it up later, or cancel it. Input is validated here before anything is started, and again in the workflow.
 */
import { randomUUID } from 'node:crypto';
import {
  Client,
  Connection,
  WithStartWorkflowOperation,
  WorkflowExecutionAlreadyStartedError,
  WorkflowUpdateFailedError,
  isGrpcServiceError,
  type ClientInterceptors,
  type ConnectionOptions,
  type WorkflowHandle,
  type WorkflowStartOptions,
} from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { PodProgress } from '../core/classify';
import type { SandboxKind } from '../core/sandbox';
import { DEFAULT_POLICY, DEFAULT_TASK_QUEUE, type ExecutionPolicy } from '../core/policy';
import {
  queueTimedOut,
  readUnserved,
  unservedBoundSeconds,
  unservedError,
  unservedReason,
  unservedResult,
  type Unserved,
} from '../core/queue';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_LANGUAGE, isLanguage } from '../core/languages';
import type { ExecutionInput, ExecutionResult, Language, LiveOutput } from '../core/types';
import { validateExecutionId, validateInput } from '../core/validate';
import {
  openSessionsQuery,
  sessionBoundSeconds,
  sessionLimitMessage,
  validateSessionOptions,
  type SessionOptions,
} from '../core/session';
import type { session as sessionWorkflow } from '../workflows/session';
import type { workerPing } from '../workflows/ping';
import { Session, type SessionServed } from './session';
import type { executeCode as executeCodeWorkflow } from '../workflows';
import { progressQuery, resultUpdate, timelineQuery, type ExecutionProgress } from '../workflows/queries';
import { connectClient, temporalSettingsFromEnv, TemporalConnectionError, type TemporalSettings } from './connection';
import { ExecutionWaitAbortedError, NoWorkerError, SessionLimitError } from './errors';
import { inSpan, tracingInterceptors } from './trace';
import { ExecutionWatcher, progressOf, runHeartbeat, type ProgressUpdate, type WatchCallbacks } from './watch';

export { InvalidInputError } from '../core/validate';
export {
  DEFAULT_LANGUAGE,
  LANGUAGE_NAMES,
  LANGUAGES,
  languageNamed,
  SESSION_LANGUAGES,
  type LanguageSpec,
} from '../core/languages';
export type * from '../core/types';
export type { NetworkOptions, NetworkReport, NetworkConnection } from '../core/egress';
export type { ExecutionProgress } from '../workflows/queries';
export type { PodProgress } from '../core/classify';
export type { OutputChunkInfo, ProgressUpdate, WatchCallbacks } from './watch';
export { ExecutionWaitAbortedError, NoWorkerError, SessionClosedError, SessionLimitError } from './errors';
export { Session, type SessionRunOptions } from './session';
export type { ForkOptions, SessionOptions, SessionRunInput, SessionRunResult, SessionState } from '../core/session';
export { sessionRunNotes } from '../core/session';
export { TemporalConnectionError, temporalSettingsFromEnv, type TemporalSettings } from './connection';

export { DEFAULT_TASK_QUEUE };

export interface SandboxClientOptions {
  /** An existing Temporal client. */
  client?: Client;
  /**
   * Where Temporal is (address, namespace, TLS or API key); unset parts come from TEMPORAL_ADDRESS,
   * TEMPORAL_NAMESPACE, TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY, TEMPORAL_API_KEY, else 127.0.0.1:7233 and 'default'.
   */
  temporal?: Partial<TemporalSettings>;
  /** Raw connection options (instead of `temporal`). */
  connection?: ConnectionOptions;
  namespace?: string;
  taskQueue?: string;
  /** Limits the client checks before starting; the worker's policy is what the workflow enforces. */
  policy?: ExecutionPolicy;
  /**
   * Trace each execution (a span `executeCode`, with Temporal's calls, the workflow and its steps under it) through
   * the global OpenTelemetry tracer provider, which the application registers. For a client passed as `client`, add
   * Temporal's `OpenTelemetryWorkflowClientInterceptor` to it instead.
   */
  tracing?: boolean;
  /**
   * While a caller waits on an execution that is still queued and no worker polls its task queue at all (none seen
   * for about a minute, or never), end it after this many seconds as `infra_error` / `NoWorker`, whose message says
   * how to start one, instead of waiting for the queue timeout. Default 10; 0 waits for the queue timeout.
   */
  noWorkerSeconds?: number;
  /**
   * How long a session run may wait for its session to take it up (a worker handles the session's workflow task at
   * once when there is one). Past it the run is refused for good and `run` throws NoWorkerError with `mayHaveRun:
   * false`: nothing ran. Default 30; 0 waits forever.
   */
  runAcceptSeconds?: number;
}

export interface OpenSessionOptions extends SessionOptions {
  /** The session's id (its workflow's id). Default: `session-<random uuid>`. */
  sessionId?: string;
  /**
   * When a session with this id is open already: 'fail' (WorkflowExecutionAlreadyStartedError, the default) or
   * 'attach' to it (its own options stay). A closed session's id opens a new, empty session.
   */
  ifOpen?: 'fail' | 'attach';
}

export interface StartOptions {
  /** The execution's id and workflow id. Starting the same id again attaches to the same run. Default: random. */
  executionId?: string;
}

export interface ExecuteOptions extends StartOptions, WatchCallbacks {
  /** Stop waiting when it aborts (ExecutionWaitAbortedError); the execution goes on. */
  signal?: AbortSignal;
  /** Stop waiting after this long (ExecutionWaitAbortedError); the execution goes on. */
  waitTimeoutMs?: number;
}

const GRPC_NOT_FOUND = 5;

const DEFAULT_NO_WORKER_SECONDS = 10;
const DEFAULT_RUN_ACCEPT_SECONDS = 30;
/**
 * Temporal lists a worker's poller with the time its last poll began: a worker waiting in a long poll (up to a
 * minute) and one that stopped just after its last poll began look alike. Past this, a listed poller is a worker
 * gone (the server keeps one listed for minutes).
 */
const LISTED_POLL_MS = 70_000;
/** How long a ping waits for a worker to answer. */
const PING_MS = 5_000;
/** While a caller waits on a session run, how often at most it pings the task queue. */
const PING_EVERY_MS = 10_000;
/** A step of a session that heartbeat this recently is a worker serving it (steps beat every second or so). */
const STEP_BEAT_MS = 15_000;

/** The update id every caller of executeCode uses: the server keeps one `result` update per execution. */
const RESULT_UPDATE_ID = 'result';

export type ExecutionState =
  | {
      executionId: string;
      /** Started, and no worker has taken it yet. */
      state: 'queued';
      taskQueue: string;
      /** Workers polling the task queue now (0: none is serving it). */
      pollers: number;
      /** How long it has waited, in ms. */
      waitingMs: number;
    }
  | {
      executionId: string;
      state: 'running';
      /** Where it stands, from Temporal's own record (no worker needed). */
      stage: ProgressUpdate;
      /** The workflow's own account (phase, detail), when a worker answers. */
      progress?: ExecutionProgress;
      /** What the run step last reported from the cluster (pod, node, what it waits for), when it runs. */
      pod?: PodProgress;
      /** The newest stdout and stderr of the running program (a bounded tail). */
      output?: LiveOutput;
      /** Where it runs, once it has a sandbox: a pod of the warm pool, or a Job made for it. */
      sandbox?: SandboxKind;
    }
  /** The result is known (and was returned to callers); the sandbox's objects are being removed. */
  | { executionId: string; state: 'cleaning_up'; result: ExecutionResult; progress?: ExecutionProgress }
  | { executionId: string; state: 'completed'; result: ExecutionResult }
  | { executionId: string; state: 'failed' | 'cancelled' | 'terminated' | 'timed_out'; error: string };

type Handle = WorkflowHandle<typeof executeCodeWorkflow>;

function firstLine(code: string): string {
  const line = code.split('\n').find((l) => l.trim().length > 0) ?? '';
  return line.length > 80 ? `${line.slice(0, 77)}...` : line;
}

function preview(input: ExecutionInput): string {
  const lines = input.code.split('\n');
  const shown = lines.slice(0, 40).join('\n').slice(0, 2000);
  const more = lines.length > 40 || shown.length < input.code.length ? '\n…' : '';
  return `\`\`\`${input.language ?? DEFAULT_LANGUAGE}\n${shown}${more}\n\`\`\``;
}

/** The await step's heartbeat of an execution started before the fast path. */
function legacyAwaitProgress(raw: Awaited<ReturnType<Handle['describe']>>['raw']): PodProgress | undefined {
  const payload = raw.pendingActivities?.find((a) => a.activityType?.name === 'awaitCompletion')?.heartbeatDetails
    ?.payloads?.[0];
  return payload ? defaultPayloadConverter.fromPayload<PodProgress>(payload) : undefined;
}

/** A client from raw connection options, with the same typed failures as connectClient. */
async function connectRaw(
  options: ConnectionOptions,
  s: TemporalSettings,
  interceptors?: ClientInterceptors,
): Promise<Client> {
  let connection: Connection;
  try {
    connection = await Connection.connect(options);
  } catch (err) {
    throw new TemporalConnectionError(
      s.address,
      s.namespace,
      'unreachable',
      err instanceof Error ? err.message : String(err),
    );
  }
  return new Client({ connection, namespace: s.namespace, ...(interceptors ? { interceptors } : {}) });
}

export class SandboxClient {
  private constructor(
    readonly temporal: Client,
    private readonly taskQueue: string,
    private readonly policy: ExecutionPolicy,
    private readonly ownedConnection?: { close(): Promise<void> },
    private readonly noWorkerSeconds = DEFAULT_NO_WORKER_SECONDS,
    private readonly runAcceptSeconds = DEFAULT_RUN_ACCEPT_SECONDS,
  ) {}

  /** Connects to Temporal; an unreachable server or a missing namespace is a TemporalConnectionError naming both. */
  static async connect(options: SandboxClientOptions = {}): Promise<SandboxClient> {
    let client = options.client;
    let owned: { close(): Promise<void> } | undefined;
    if (!client) {
      const env = temporalSettingsFromEnv();
      const settings: TemporalSettings = options.connection
        ? { ...env, address: options.connection.address ?? env.address, namespace: options.namespace ?? env.namespace }
        : { ...env, ...options.temporal, ...(options.namespace ? { namespace: options.namespace } : {}) };
      const interceptors = options.tracing ? tracingInterceptors() : undefined;
      client = options.connection
        ? await connectRaw(options.connection, settings, interceptors)
        : await connectClient(settings, undefined, interceptors);
      owned = client.connection;
    }
    return new SandboxClient(
      client,
      options.taskQueue ?? DEFAULT_TASK_QUEUE,
      options.policy ?? DEFAULT_POLICY,
      owned,
      options.noWorkerSeconds ?? DEFAULT_NO_WORKER_SECONDS,
      options.runAcceptSeconds ?? DEFAULT_RUN_ACCEPT_SECONDS,
    );
  }

  /**
   * Starts an execution, or attaches to the one already started (running or finished) under the same id.
   * Throws InvalidInputError (naming the field and the limit) before anything is started.
   */
  async startExecution(input: ExecutionInput, options: StartOptions = {}): Promise<Handle> {
    const { executionId, start } = this.startOptions(input, options);
    try {
      return await this.temporal.workflow.start<typeof executeCodeWorkflow>('executeCode', start);
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) return this.handle(executionId);
      throw err;
    }
  }

  /**
   * Runs code and returns its result as soon as the output is in, while the execution goes on to clean up (the
   * program failing is a result, not an exception). Starts the execution, or attaches to the one under the same id
   * in whatever state it is: every caller gets the same result. `onStdout` / `onStderr` receive the output while
   * the program runs, in order, each piece once.
   */
  async executeCode(input: ExecutionInput, options: ExecuteOptions = {}): Promise<ExecutionResult> {
    const { executionId, start } = this.startOptions(input, options);
    return inSpan('executeCode', executionId, () => this.execute(executionId, start, options));
  }

  private async execute(
    executionId: string,
    start: ReturnType<SandboxClient['startOptions']>['start'],
    options: ExecuteOptions,
  ): Promise<ExecutionResult> {
    const queued = async (waitedMs: number) => {
      const pollers = await this.pollers();
      const who = pollers === 0 ? 'none polling' : `${pollers} polling`;
      return `waiting for a worker on task queue ${this.taskQueue} (${who}; waited ${Math.round(waitedMs / 1000)} s)`;
    };
    const watch =
      options.onStdout || options.onStderr || options.onDisplay || options.onProgress
        ? new ExecutionWatcher(this.handle(executionId), options, queued)
        : undefined;
    // The guard stops when the result is in or this caller stops waiting (the execution then stays queued).
    let done = false;
    try {
      const wait = this.awaitResult(executionId, start);
      wait.then(
        () => (done = true),
        () => (done = true),
      );
      // While this caller waits, an execution that no worker starts in time is ended here (Temporal alone cannot).
      const guarded = this.queueGuard(executionId, () => done).then((r) => r ?? wait);
      const result = await this.untilStopped(executionId, Promise.race([wait, guarded]), options);
      await watch?.finish(result);
      return result;
    } finally {
      done = true;
      await watch?.stop();
    }
  }

  /**
   * Ends the execution when no worker has started it within the policy's queue timeout: it is terminated (nothing
   * was created, so nothing needs cleaning; if a worker took it in that very moment, the reconciler removes what it
   * made) and its result says `QueueTimeout`. Returns undefined once a worker has it, or when `done()`.
   */
  private async queueGuard(executionId: string, done: () => boolean): Promise<ExecutionResult | undefined> {
    const limitSeconds = this.policy.queueTimeoutSeconds;
    const noWorkerMs = this.noWorkerSeconds * 1000;
    if (!(limitSeconds > 0) && !(noWorkerMs > 0)) return undefined;
    const handle = this.handle(executionId);
    let unservedSince: number | undefined;
    while (!done()) {
      const d = await handle.describe().catch(() => undefined);
      if (!d) {
        await delay(500); // not started yet
        continue;
      }
      if (d.status.name !== 'RUNNING' || progressOf(d.raw).stage !== 'queued') return undefined;
      const now = Date.now();
      const startedAt = d.startTime.getTime();
      if (noWorkerMs > 0) {
        // No worker at all (none polled for about a minute, or ever): say so within seconds, not at the queue timeout.
        const pollers = await this.pollers().catch(() => undefined);
        unservedSince = pollers === 0 ? (unservedSince ?? now) : undefined;
        if (unservedSince !== undefined && now - unservedSince >= noWorkerMs && !done()) {
          const waitedSeconds = Math.round((now - startedAt) / 1000);
          return this.endUnserved(executionId, { kind: 'noWorker', taskQueue: this.taskQueue, waitedSeconds });
        }
      }
      if (queueTimedOut(this.policy, startedAt, now))
        return this.endUnserved(executionId, { kind: 'queueTimeout', limitSeconds });
      const left = limitSeconds > 0 ? startedAt + limitSeconds * 1000 - now : Infinity;
      await delay(Math.max(1, Math.min(left + 1, noWorkerMs > 0 ? 1000 : 2000)));
    }
    return undefined;
  }

  /** Terminates an execution nobody ran (nothing was created, so nothing needs cleaning) and returns its result. */
  private async endUnserved(executionId: string, why: Unserved): Promise<ExecutionResult | undefined> {
    await this.handle(executionId)
      .terminate(unservedReason(why))
      .catch(() => undefined);
    return this.queueTimeoutOutcome(executionId);
  }

  /**
   * The result of an execution nobody ran: one a client ended because no worker started it in time, or one the
   * server ended at its bound before any worker took it up (unservedBoundSeconds). Undefined for any other.
   */
  private async queueTimeoutOutcome(executionId: string): Promise<ExecutionResult | undefined> {
    const events = (await this.handle(executionId).fetchHistory()).events ?? [];
    const last = events[events.length - 1];
    const started = events[0];
    // A workflow task begun means a worker took it up (at the very moment it was ended, for a termination).
    const takenUp = events.some((e) => e.workflowTaskStartedEventAttributes);
    let why = readUnserved(last?.workflowExecutionTerminatedEventAttributes?.reason ?? '');
    if (!why && last?.workflowExecutionTimedOutEventAttributes && !takenUp) {
      const bound = started?.workflowExecutionStartedEventAttributes?.workflowExecutionTimeout;
      why = { kind: 'queueTimeout', limitSeconds: Number(bound?.seconds ?? 0), onServer: true };
    }
    if (!why) return undefined;
    const payload = started?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    const input = payload ? defaultPayloadConverter.fromPayload<Partial<ExecutionInput>>(payload) : {};
    const language: Language = isLanguage(input.language) ? input.language : DEFAULT_LANGUAGE;
    const t = started?.eventTime;
    return unservedResult(takenUp ? { ...why, takenUp } : why, {
      executionId,
      language,
      startedAt: t ? Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : 0,
      namespace: this.policy.namespace,
      image: this.policy.images[language],
    });
  }

  /** Races a wait against the caller's AbortSignal and wait timeout. */
  private async untilStopped<T>(
    executionId: string,
    wait: Promise<T>,
    options: Pick<ExecuteOptions, 'signal' | 'waitTimeoutMs'>,
  ): Promise<T> {
    const { signal, waitTimeoutMs } = options;
    if (!signal && waitTimeoutMs === undefined) return wait;
    wait.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const stopped = new Promise<'aborted' | 'timeout'>((resolve) => {
      if (signal?.aborted) resolve('aborted');
      onAbort = () => resolve('aborted');
      signal?.addEventListener('abort', onAbort, { once: true });
      if (waitTimeoutMs !== undefined) timer = setTimeout(() => resolve('timeout'), waitTimeoutMs);
    });
    try {
      const first = await Promise.race([wait.then((v) => ({ v })), stopped]);
      if (typeof first === 'object') return first.v;
      const state = await this.getExecution(executionId).then(
        (s) =>
          s.state === 'running' || s.state === 'cleaning_up' || s.state === 'completed' || s.state === 'queued'
            ? s.state
            : 'unknown',
        () => 'unknown' as const,
      );
      throw new ExecutionWaitAbortedError(executionId, state, first);
    } finally {
      clearTimeout(timer);
      if (onAbort) signal?.removeEventListener('abort', onAbort);
    }
  }

  private startOptions(input: ExecutionInput, options: StartOptions) {
    const executionId = validateExecutionId(options.executionId ?? randomUUID());
    const request = validateInput(input, this.policy);
    const bound = unservedBoundSeconds(this.policy, request.timeoutSeconds);
    const start: WorkflowStartOptions<typeof executeCodeWorkflow> = {
      taskQueue: this.taskQueue,
      workflowId: executionId,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      // The server ends it there, waited for or not: one no worker ever takes up does not stay open for good.
      ...(bound !== undefined ? { workflowExecutionTimeout: bound * 1000 } : {}),
      staticSummary: `${input.language ?? DEFAULT_LANGUAGE}: ${firstLine(input.code)}`,
      staticDetails: preview(input),
    };
    return { executionId, start };
  }

  /** The `result` update, sent with the start (or to the running execution); a closed execution gives its result. */
  private async awaitResult(
    executionId: string,
    start: WorkflowStartOptions<typeof executeCodeWorkflow>,
  ): Promise<ExecutionResult> {
    const startWorkflowOperation = new WithStartWorkflowOperation<typeof executeCodeWorkflow>('executeCode', {
      ...start,
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    try {
      return await this.temporal.workflow.executeUpdateWithStart(resultUpdate, {
        startWorkflowOperation,
        updateId: RESULT_UPDATE_ID,
      });
    } catch (err) {
      // The execution ended before (the update cannot reach a closed run), or ended without a result (bad input):
      // its outcome is the workflow's.
      // NOT_FOUND: the run closed while the update was on its way (terminated because nobody served it in time).
      const closedMeanwhile = isGrpcServiceError(err) && Number(err.code) === GRPC_NOT_FOUND;
      if (
        err instanceof WorkflowExecutionAlreadyStartedError ||
        err instanceof WorkflowUpdateFailedError ||
        closedMeanwhile
      ) {
        return this.handle(executionId)
          .result()
          .catch(async (failure: unknown) => {
            const outcome = await this.queueTimeoutOutcome(executionId).catch(() => undefined);
            if (!outcome) throw failure;
            return outcome;
          });
      }
      throw err;
    }
  }

  /**
   * Opens a session: one sandbox whose interpreter keeps its state from run to run (see Session). Throws
   * InvalidInputError (naming the field and the limit) before anything is started.
   */
  async openSession(options: OpenSessionOptions = {}): Promise<Session> {
    const { sessionId = `session-${randomUUID()}`, ifOpen = 'fail', ...rest } = options;
    validateExecutionId(sessionId);
    const spec = validateSessionOptions(rest, this.policy);
    await this.someWorkerPolls();
    // The cap on open sessions: checked here against this client's policy, and again by the session itself.
    const { count: open } = await this.temporal.workflow.count(openSessionsQuery(this.taskQueue));
    if (ifOpen !== 'attach' && open >= this.policy.maxOpenSessions)
      throw new SessionLimitError(
        this.taskQueue,
        open,
        this.policy.maxOpenSessions,
        sessionLimitMessage(open, this.policy.maxOpenSessions, this.taskQueue),
      );
    await this.temporal.workflow.start<typeof sessionWorkflow>('session', {
      workflowId: sessionId,
      taskQueue: this.taskQueue,
      args: [{ options: rest }],
      workflowIdConflictPolicy: ifOpen === 'attach' ? 'USE_EXISTING' : 'FAIL',
      workflowExecutionTimeout: sessionBoundSeconds(spec, this.policy) * 1000,
    });
    return new Session(this.temporal, sessionId, this.served);
  }

  /** A session by its id, opened by this or any other process. */
  getSession(sessionId: string): Session {
    return new Session(this.temporal, validateExecutionId(sessionId), this.served);
  }

  /**
   * Resolves once a worker serves the task queue now; NoWorkerError when none has for `noWorkerSeconds` (0: no
   * check). A poll begun in the last few seconds says so; an older one may be a worker gone, and a ping decides.
   */
  private async someWorkerPolls(): Promise<void> {
    const started = Date.now();
    // A worker that has just started shows here after its first poll: it is given the same while.
    while (
      this.noWorkerSeconds > 0 &&
      !(await this.workerServes(this.noWorkerSeconds * 1000 - (Date.now() - started)))
    ) {
      if (Date.now() - started >= this.noWorkerSeconds * 1000)
        throw this.noWorkerError(Math.round((Date.now() - started) / 1000));
      await sleep(500);
    }
  }

  /**
   * Whether a worker serves the task queue now, on evidence that cannot be minutes old: with a poller listed (the
   * server lists one for minutes after its worker stopped, and even a poll begun a second ago may be a worker's last),
   * a worker that answers a ping within `withinMs` (at most PING_MS). `accept` filters the pollers (and the answering
   * worker) that count, by identity.
   */
  async workerServes(withinMs = PING_MS, accept: (identity: string) => boolean = () => true): Promise<boolean> {
    const listed = (await this.pollerList()).filter((p) => accept(p.identity));
    if (!listed.some((p) => p.ageMs < LISTED_POLL_MS)) return false;
    const answered = await this.ping(Math.max(1000, Math.min(PING_MS, withinMs)));
    return answered !== undefined && accept(answered);
  }

  /**
   * Starts a `workerPing` workflow on the task queue and returns the identity of the worker that completed it, or
   * undefined when none did within `ms` (the server ends it then: nothing is left).
   */
  async ping(ms = PING_MS): Promise<string | undefined> {
    const id = `durable-sandbox-ping-${randomUUID()}`;
    const handle = await this.temporal.workflow.start<typeof workerPing>('workerPing', {
      workflowId: id,
      taskQueue: this.taskQueue,
      workflowExecutionTimeout: Math.ceil(ms / 1000) * 1000 + 1000,
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), ms)));
    try {
      const answer: string = await Promise.race([handle.result().catch(() => 'late' as const), late]);
      if (answer === 'late') {
        await handle.terminate('no worker answered the ping').catch(() => undefined);
        return undefined;
      }
    } finally {
      clearTimeout(timer);
    }
    const history = await handle.fetchHistory();
    return (
      history.events?.find((e) => e.workflowTaskStartedEventAttributes)?.workflowTaskStartedEventAttributes?.identity ??
      ''
    );
  }

  private noWorkerError(waitedSeconds: number): NoWorkerError {
    const e = unservedError({ kind: 'noWorker', taskQueue: this.taskQueue, waitedSeconds });
    return new NoWorkerError(this.taskQueue, `${e.reason}: ${e.message}`);
  }

  /** A run's guard: it gives up once no worker has polled the task queue for `noWorkerSeconds` (0: never). */
  private get served(): SessionServed {
    return {
      taskQueue: this.taskQueue,
      ...(this.runAcceptSeconds > 0 ? { acceptWithinMs: this.runAcceptSeconds * 1000 } : {}),
      whileUnserved: async (stop, sessionId) => {
        const noWorkerMs = this.noWorkerSeconds * 1000;
        let unservedSince: number | undefined;
        let pingedAt = 0;
        for (;;) {
          await sleep(noWorkerMs > 0 ? Math.min(1000, noWorkerMs) : 3_600_000, undefined, { signal: stop }).catch(
            () => undefined,
          );
          if (stop.aborted) return new Promise<never>(() => undefined);
          if (noWorkerMs <= 0) continue;
          // A step of the session that heartbeats is a worker there (a run's step beats every second); else, with a
          // poller listed, a ping answered (at most every PING_EVERY_MS; the answer stands until the next).
          let served = await this.stepBeats(sessionId).catch(() => true);
          if (!served) {
            const listed = await this.pollerList().catch(() => undefined);
            if (!listed)
              served = true; // Temporal itself did not answer: nothing to go by
            else if (listed.some((p) => p.ageMs < LISTED_POLL_MS) && Date.now() - pingedAt >= PING_EVERY_MS) {
              pingedAt = Date.now();
              served = (await this.ping().catch(() => '')) !== undefined;
            } else served = unservedSince === undefined && listed.some((p) => p.ageMs < LISTED_POLL_MS);
          }
          const now = Date.now();
          unservedSince = served ? undefined : (unservedSince ?? now);
          if (unservedSince !== undefined && now - unservedSince >= noWorkerMs)
            throw this.noWorkerError(Math.round((now - unservedSince) / 1000));
        }
      },
    };
  }

  /** Whether a step of the workflow (a session's run, its pod's opening) heartbeat in the last STEP_BEAT_MS. */
  private async stepBeats(workflowId: string): Promise<boolean> {
    const { raw } = await this.temporal.workflow.getHandle(workflowId).describe();
    const now = Date.now();
    return (raw.pendingActivities ?? []).some((a) => {
      const t = a.lastHeartbeatTime;
      return !!t?.seconds && now - Number(t.seconds) * 1000 < STEP_BEAT_MS;
    });
  }

  handle(executionId: string): Handle {
    return this.temporal.workflow.getHandle<typeof executeCodeWorkflow>(executionId);
  }

  /** Whether the execution's workflow closes (however it ends) within `ms`; false if it is still open then. */
  async closesWithin(executionId: string, ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const closed = this.handle(executionId)
      .result()
      .then(
        () => true,
        () => true,
      );
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, ms))));
    try {
      return await Promise.race([closed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Where an execution stands: queued, running (with its progress, live output and pod), cleaning up (with the
   * result), completed, or how it ended. Works without any worker: it reads Temporal's record of the execution, and
   * asks the workflow itself only when a worker polls its task queue.
   */
  async getExecution(executionId: string): Promise<ExecutionState> {
    const handle = this.handle(executionId);
    const { status, raw, startTime } = await handle.describe();
    switch (status.name) {
      case 'RUNNING':
      case 'CONTINUED_AS_NEW': {
        const stage = progressOf(raw);
        const pollers = await this.pollers();
        if (stage.stage === 'queued') {
          return {
            executionId,
            state: 'queued',
            taskQueue: this.taskQueue,
            pollers,
            waitingMs: Date.now() - startTime.getTime(),
          };
        }
        const progress = pollers > 0 ? await this.ask(() => handle.query(progressQuery)) : undefined;
        const result =
          progress?.result ?? (stage.stage === 'finishing' ? await this.resultFromHistory(executionId) : undefined);
        if (result) return { executionId, state: 'cleaning_up', result, ...(progress ? { progress } : {}) };
        const run = runHeartbeat(raw);
        const pod = run?.progress ?? legacyAwaitProgress(raw);
        return {
          executionId,
          state: 'running',
          stage,
          ...(progress ? { progress } : {}),
          ...(pod ? { pod } : {}),
          ...(run?.output ? { output: run.output } : {}),
          ...(run?.sandbox ? { sandbox: run.sandbox } : {}),
        };
      }
      case 'COMPLETED':
        return { executionId, state: 'completed', result: await handle.result() };
      default: {
        const ended =
          status.name === 'TERMINATED' || status.name === 'TIMED_OUT'
            ? await this.queueTimeoutOutcome(executionId)
            : undefined;
        if (ended) return { executionId, state: 'completed', result: ended };
        const state = status.name === 'TIMED_OUT' ? 'timed_out' : (status.name.toLowerCase() as 'failed');
        const error = await handle.result().then(
          () => status.name,
          (e: unknown) => (e instanceof Error ? (e.cause instanceof Error ? e.cause.message : e.message) : String(e)),
        );
        return { executionId, state, error };
      }
    }
  }

  /** Workers polling this client's task queue for workflow tasks (listed, and seen in the last minute or so). */
  async pollers(): Promise<number> {
    return (await this.pollerList()).filter((p) => p.ageMs < LISTED_POLL_MS).length;
  }

  /**
   * The pollers Temporal lists for this client's task queue (workflow tasks), each with how long ago its last poll
   * began. The server keeps a worker listed for minutes after it stopped; one waiting in a long poll shows the poll's
   * start, up to a minute back.
   */
  async pollerList(): Promise<{ identity: string; ageMs: number }[]> {
    const { pollers } = await this.temporal.workflowService.describeTaskQueue({
      namespace: this.temporal.options.namespace,
      taskQueue: { name: this.taskQueue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    });
    const now = Date.now();
    return (pollers ?? []).map((p) => ({
      identity: p.identity ?? '',
      ageMs: p.lastAccessTime?.seconds
        ? Math.max(0, now - (Number(p.lastAccessTime.seconds) * 1000 + Math.floor((p.lastAccessTime.nanos ?? 0) / 1e6)))
        : 0,
    }));
  }

  /** A question to the workflow (needs a worker), given up on after a few seconds. */
  private async ask<T>(question: () => Promise<T>): Promise<T | undefined> {
    return this.temporal.withDeadline(Date.now() + 3000, question).catch(() => undefined);
  }

  /** The result an execution already answered with (its `result` update), read from its history. */
  private async resultFromHistory(executionId: string): Promise<ExecutionResult | undefined> {
    const history = await this.handle(executionId).fetchHistory();
    for (const e of history.events ?? []) {
      const payload = e.workflowExecutionUpdateCompletedEventAttributes?.outcome?.success?.payloads?.[0];
      if (payload) return defaultPayloadConverter.fromPayload<ExecutionResult>(payload);
    }
    return undefined;
  }

  /** The phase timeline so far. */
  async timeline(executionId: string) {
    return this.handle(executionId).query(timelineQuery);
  }

  /**
   * Requests cancellation. The sandbox pod is stopped, cleanup still runs, and the execution's result has status
   * 'cancelled' with whatever output the program had written.
   */
  async cancelExecution(executionId: string): Promise<void> {
    await this.handle(executionId).cancel();
  }

  async close(): Promise<void> {
    await this.ownedConnection?.close();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The durable steps the crash-point harness kills, each with what must hold once a retry has ended it: exactly one
 * program run (one answer for a session run), the result the step should give, and nothing left once cleanup ran.
 * A new step is covered by adding a case here.
 */
import { createHash } from 'node:crypto';
import type { V1Pod } from '@kubernetes/client-node';
import { MockActivityEnvironment } from '@temporalio/testing';
import { QUIET } from './tries';
import type { SandboxActivities } from '../../activities';
import type { Kube } from '../../activities/kube';
import type { AttemptSpec, CleanupResult, RunResult } from '../../core/attempt';
import type { Language } from '../../core/languages';
import { LABELS, resourceNames } from '../../core/names';
import { claimable, poolRef, poolSelector, type PoolRef } from '../../core/pool';
import { podAlive } from '../../core/session-run';
import type { Snapshot } from '../../core/workspace';
import { sessionSelector, validateSessionOptions, validateSessionRun, type SessionSpec } from '../../core/session';
import { validateInput } from '../../core/validate';
import type { SessionRunReport } from '../../activities/session-sandbox';
import type { StepWorld } from './tries';

export interface Harness {
  world: StepWorld;
  /** Admin rights: the harness's own checks and tidying. */
  admin: Kube;
  /** The unfaulted worker's activities, for what a case needs before and after the step under test. */
  plain: SandboxActivities;
  /** A fresh id for a case's execution or session. */
  id(prefix: string): string;
  close(): void;
}

export interface StepCase<I = unknown, O = unknown> {
  name: string;
  /** Makes the world the step runs in and gives its input. */
  prepare(h: Harness): Promise<I>;
  /** Between a dead try and the next (e.g. a pool pod becomes ready). */
  beforeRetry?(h: Harness, input: I): Promise<void>;
  step(a: SandboxActivities): (input: I) => Promise<O>;
  /** What does not hold once the step ended (empty: everything does). */
  check(h: Harness, input: I, result: O): Promise<string[]>;
  /** Removes what the case made, unfaulted; then says what is still there. */
  finish(h: Harness, input: I, result: O | undefined): Promise<string[]>;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
const names = (l: { items: { metadata?: { name?: string } }[] }) => l.items.map((i) => i.metadata!.name!);

async function until<T>(what: string, f: () => Promise<T>, ok: (v: T) => boolean, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms / 1000} s`);
    await delay(250);
  }
}

/** Runs one activity once, unfaulted, as the harness's own worker. */
export function plainly<I, O>(h: Harness, f: (a: SandboxActivities) => (i: I) => Promise<O>, input: I): Promise<O> {
  return new MockActivityEnvironment({ taskQueue: h.world.taskQueue }, QUIET).run(f(h.plain), input);
}

// --- executions ---------------------------------------------------------------------------------------------------

async function executionObjects(h: Harness, executionId: string): Promise<string[]> {
  const { namespace } = h.world.deps.policy;
  const labelSelector = resourceNames(executionId, 1).executionSelector;
  const [jobs, pods, cms] = await Promise.all([
    h.admin.batch.listNamespacedJob({ namespace, labelSelector }),
    h.admin.core.listNamespacedPod({ namespace, labelSelector }),
    h.admin.core.listNamespacedConfigMap({ namespace, labelSelector }),
  ]);
  return [
    ...names(jobs).map((n) => `Job ${n}`),
    ...names(pods).map((n) => `Pod ${n}`),
    ...names(cms).map((n) => `ConfigMap ${n}`),
  ];
}

/** The execution's pods: one means one program run (a Job runs one pod, a pool pod takes one task). */
async function attemptPods(h: Harness, executionId: string): Promise<V1Pod[]> {
  const { namespace } = h.world.deps.policy;
  const labelSelector = resourceNames(executionId, 1).attemptSelector;
  return (await h.admin.core.listNamespacedPod({ namespace, labelSelector })).items;
}

function spec(h: Harness, executionId: string, language: Language, code: string): AttemptSpec {
  const policy = h.world.deps.policy;
  return { executionId, attempt: 1, request: validateInput({ code, language }, policy), policy };
}

/** The pool a case's warm sandboxes come from (the harness's task queue's Python pool). */
export function harnessPool(h: Harness): PoolRef {
  return poolRef(h.world.taskQueue, 'python', h.world.deps.policy, h.world.deps.launcherSource);
}

async function poolPods(h: Harness): Promise<V1Pod[]> {
  const { namespace } = h.world.deps.policy;
  const labelSelector = poolSelector(harnessPool(h));
  return (await h.admin.core.listNamespacedPod({ namespace, labelSelector })).items;
}

const poolInput = (h: Harness) => ({
  taskQueue: h.world.taskQueue,
  language: 'python' as const,
  policy: h.world.deps.policy,
  config: { size: 1, maxIdleSeconds: 600 },
  owner: `crash-points/${h.world.taskQueue}`,
});

/** One ready pod in the harness's pool. */
export async function poolReady(h: Harness): Promise<void> {
  const pool = harnessPool(h);
  if ((await poolPods(h)).some((p) => claimable(p, pool))) return;
  await plainly(h, (a) => a.maintainPool, poolInput(h));
  await until(
    'a ready pool pod',
    () => poolPods(h),
    (ps) => ps.some((p) => claimable(p, pool)),
  );
}

/** No pod in the harness's pool. */
export async function poolEmpty(h: Harness): Promise<void> {
  const { namespace } = h.world.deps.policy;
  for (const p of await poolPods(h))
    await h.admin.core
      .deleteNamespacedPod({ name: p.metadata!.name!, namespace, gracePeriodSeconds: 0 })
      .catch(() => undefined);
  await until(
    'an empty pool',
    () => poolPods(h),
    (ps) => ps.length === 0,
  );
}

function runCase(
  name: string,
  language: Language,
  world: { first: 'cold' | 'warm'; retry: 'cold' | 'warm' },
): StepCase<AttemptSpec, RunResult> {
  const code = language === 'bash' ? 'echo once' : 'print("once")';
  return {
    name,
    async prepare(h) {
      if (world.first === 'warm') await poolReady(h);
      if (world.first === 'cold' && language === 'python') await poolEmpty(h);
      return spec(h, h.id('crash-run'), language, code);
    },
    async beforeRetry(h) {
      if (world.retry === 'warm') await poolReady(h);
    },
    step: (a) => a.runSandbox,
    async check(h, input, r) {
      const wrong: string[] = [];
      if (r.end.kind !== 'finished' || r.end.exitCode !== 0) wrong.push(`ended ${JSON.stringify(r.end)}`);
      if (r.output.stdout.text !== 'once\n') wrong.push(`stdout ${JSON.stringify(r.output.stdout.text)}`);
      const pods = await attemptPods(h, input.executionId);
      if (pods.length !== 1)
        wrong.push(`${pods.length} pods ran the attempt: ${pods.map((p) => p.metadata?.name).join(', ')}`);
      return wrong;
    },
    async finish(h, input, r) {
      const { namespace } = h.world.deps.policy;
      await plainly(h, (a) => a.cleanup, {
        executionId: input.executionId,
        attempt: 1,
        namespace,
        sandbox: r?.sandbox,
      });
      const left = await executionObjects(h, input.executionId);
      if (world.retry === 'warm' || world.first === 'warm') {
        const claimed = (await poolPods(h)).filter((p) => p.metadata?.labels?.[LABELS.poolState] === 'claimed');
        left.push(...claimed.map((p) => `claimed pool pod ${p.metadata?.name}`));
      }
      return left;
    },
  };
}

function cleanupCase(
  name: string,
  language: Language,
): StepCase<AttemptSpec & { sandbox: RunResult['sandbox'] }, CleanupResult> {
  const code = language === 'bash' ? 'echo once' : 'print("once")';
  return {
    name,
    async prepare(h) {
      if (language === 'python') await poolReady(h);
      const s = spec(h, h.id('crash-cleanup'), language, code);
      const r = await plainly(h, (a) => a.runSandbox, s);
      return { ...s, sandbox: r.sandbox };
    },
    step: (a) => (s) =>
      a.cleanup({ executionId: s.executionId, attempt: 1, namespace: s.policy.namespace, sandbox: s.sandbox }),
    async check(h, input, r) {
      const left = await executionObjects(h, input.executionId);
      return [...(r.podsRemaining !== 0 ? [`${r.podsRemaining} pods remaining`] : []), ...left.map((l) => `${l} left`)];
    },
    async finish(h, input) {
      return executionObjects(h, input.executionId);
    },
  };
}

const poolRefill: StepCase<ReturnType<typeof poolInput>, unknown> = {
  name: 'pool refill',
  async prepare(h) {
    await poolEmpty(h);
    return poolInput(h);
  },
  step: (a) => a.maintainPool,
  async check(h) {
    // Let what the dead tries sent land: a second pod would show up within moments.
    await delay(1000);
    const live = (await poolPods(h)).filter((p) => !p.metadata?.deletionTimestamp);
    return live.length === 1
      ? []
      : [`${live.length} pool pods for a pool of 1: ${live.map((p) => p.metadata?.name).join(', ')}`];
  },
  async finish() {
    return [];
  },
};

// --- sessions -----------------------------------------------------------------------------------------------------

interface SessionInput {
  sessionId: string;
  generation: number;
  spec: SessionSpec;
  policy: AttemptSpec['policy'];
}

function sessionInput(h: Harness): SessionInput {
  const policy = h.world.deps.policy;
  return {
    sessionId: h.id('crash-session'),
    generation: 1,
    spec: validateSessionOptions({ language: 'python' }, policy),
    policy,
  };
}

async function sessionPodsOf(h: Harness, sessionId: string): Promise<V1Pod[]> {
  const { namespace } = h.world.deps.policy;
  return (await h.admin.core.listNamespacedPod({ namespace, labelSelector: sessionSelector(sessionId) })).items;
}

async function releaseSession(h: Harness, sessionId: string): Promise<string[]> {
  await plainly(h, (a) => a.releaseSessionPods, { sessionId, namespace: h.world.deps.policy.namespace });
  return (await sessionPodsOf(h, sessionId)).map((p) => `session pod ${p.metadata?.name}`);
}

function runIn(s: SessionInput, pod: string, seq: number, code: string) {
  return {
    sessionId: s.sessionId,
    seq,
    pod,
    request: validateSessionRun({ code }, s.spec, s.policy),
    policy: s.policy,
    idleSeconds: 600,
  };
}

function sessionOpen(name: string, fromPool: boolean): StepCase<SessionInput, { pod: string }> {
  return {
    name,
    async prepare(h) {
      if (fromPool) await poolReady(h);
      else await poolEmpty(h);
      return sessionInput(h);
    },
    step: (a) => a.openSessionPod,
    async check(h, s, opened) {
      const live = (await sessionPodsOf(h, s.sessionId)).filter(podAlive);
      const wrong =
        live.length === 1
          ? []
          : [`${live.length} live pods for one session: ${live.map((p) => p.metadata?.name).join(', ')}`];
      // The pod it answered with takes the session's run.
      const r = await plainly(h, (a) => a.runInSession, runIn(s, opened.pod, 1, 'print("here")'));
      if (r.output.stdout.text !== 'here\n')
        wrong.push(`its pod answered ${JSON.stringify(r.end)} ${r.output.stdout.text}`);
      return wrong;
    },
    finish: (h, s) => releaseSession(h, s.sessionId),
  };
}

type RunInput = ReturnType<typeof runIn> & { s: SessionInput };

const sessionRun: StepCase<RunInput, SessionRunReport> = {
  name: 'session run',
  async prepare(h) {
    await poolEmpty(h);
    const s = sessionInput(h);
    const { pod } = await plainly(h, (a) => a.openSessionPod, s);
    return { ...runIn(s, pod, 1, 'n = globals().get("n", 0) + 1\nprint(n)'), s };
  },
  step:
    (a) =>
    ({ s: _s, ...spec }) =>
      a.runInSession(spec),
  async check(h, input, r) {
    const wrong: string[] = [];
    if (r.end.kind !== 'finished' || r.end.exitCode !== 0) wrong.push(`ended ${JSON.stringify(r.end)}`);
    if (r.output.stdout.text !== '1\n') wrong.push(`answered ${JSON.stringify(r.output.stdout.text)}`);
    // Exactly one run of it: the next run sees n incremented once.
    const next = await plainly(h, (a) => a.runInSession, runIn(input.s, input.pod, 2, 'print(n)'));
    if (next.output.stdout.text !== '1\n')
      wrong.push(`the next run saw n = ${JSON.stringify(next.output.stdout.text)}`);
    return wrong;
  },
  finish: (h, input) => releaseSession(h, input.sessionId),
};

const sessionRelease: StepCase<SessionInput, { deleted: number }> = {
  name: 'session release',
  async prepare(h) {
    await poolEmpty(h);
    const s = sessionInput(h);
    await plainly(h, (a) => a.openSessionPod, s);
    return s;
  },
  step: (a) => (s) => a.releaseSessionPods({ sessionId: s.sessionId, namespace: s.policy.namespace }),
  async check(h, s) {
    return (await sessionPodsOf(h, s.sessionId)).map((p) => `session pod ${p.metadata?.name} left`);
  },
  finish: (h, s) => releaseSession(h, s.sessionId),
};

interface SnapshotInput {
  s: SessionInput;
  pod: string;
}

async function sessionWithFile(h: Harness): Promise<SnapshotInput> {
  await poolEmpty(h);
  const s = sessionInput(h);
  const { pod } = await plainly(h, (a) => a.openSessionPod, s);
  const wrote = await plainly(h, (a) => a.runInSession, runIn(s, pod, 1, 'open("kept.txt", "w").write("v1")'));
  if (wrote.end.kind !== 'finished' || wrote.end.exitCode !== 0)
    throw new Error(`the run that writes a file: ${JSON.stringify(wrote.end)}`);
  return { s, pod };
}

const saveArgs = (h: Harness, { s, pod }: SnapshotInput) => ({
  sessionId: s.sessionId,
  namespace: s.policy.namespace,
  pod,
  seq: 1,
  sig: 'crash-points',
  replayed: 0,
  maxBytes: h.world.deps.policy.workspaceMaxBytes ?? 0,
  drop: [],
});

async function dropSession(h: Harness, sessionId: string): Promise<string[]> {
  const left = await releaseSession(h, sessionId);
  await h.world.deps.workspaces?.deleteAll(sessionId);
  return left;
}

const sessionSave: StepCase<
  SnapshotInput & { args: ReturnType<typeof saveArgs> },
  Awaited<ReturnType<SandboxActivities['saveSnapshot']>>
> = {
  name: 'session snapshot save',
  async prepare(h) {
    const i = await sessionWithFile(h);
    return { ...i, args: saveArgs(h, i) };
  },
  step: (a) => (i) => a.saveSnapshot(i.args),
  async check(h, i, r) {
    if ('error' in r) return [`the save failed: ${r.error}`];
    const body = await h.world.deps.workspaces!.get(i.s.sessionId, 1);
    if (!body) return ['no snapshot in the store'];
    const sha = createHash('sha256').update(body).digest('hex');
    return sha === r.sha256 ? [] : [`the stored snapshot (${sha}) is not the one the step reported (${r.sha256})`];
  },
  finish: (h, i) => dropSession(h, i.s.sessionId),
};

interface RestoreInput extends SnapshotInput {
  saved: Snapshot;
  /** The session's next pod, which the step restores into. */
  next: string;
}

const sessionRestore: StepCase<RestoreInput, Awaited<ReturnType<SandboxActivities['restoreWorkspace']>>> = {
  name: 'session restore',
  async prepare(h) {
    const first = await sessionWithFile(h);
    const saved = await plainly(h, (a) => a.saveSnapshot, saveArgs(h, first));
    if ('error' in saved) throw new Error(`the snapshot before the restore: ${saved.error}`);
    await h.admin.core.deleteNamespacedPod({
      name: first.pod,
      namespace: first.s.policy.namespace,
      gracePeriodSeconds: 0,
    });
    const { pod: next } = await plainly(h, (a) => a.openSessionPod, { ...first.s, generation: 2 });
    return { ...first, saved, next };
  },
  step: (a) => (i) =>
    a.restoreWorkspace({
      sessionId: i.s.sessionId,
      namespace: i.s.policy.namespace,
      pod: i.next,
      saved: i.saved,
      snapshot: { key: 1 },
    }),
  async check(h, i, r) {
    if ('error' in r) return [`the restore failed: ${r.error}`];
    const read = await plainly(h, (a) => a.runInSession, runIn(i.s, i.next, 1, 'print(open("kept.txt").read())'));
    return read.output.stdout.text === 'v1\n'
      ? []
      : [`the new pod has ${JSON.stringify(read.output.stdout.text)} ${read.output.stderr.text}`];
  },
  finish: (h, i) => dropSession(h, i.s.sessionId),
};

/** Every step the harness covers. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each case has its own input and result types
export const STEP_CASES: ReadonlyArray<StepCase<any, any>> = [
  runCase('run step (cold)', 'bash', { first: 'cold', retry: 'cold' }),
  runCase('run step (warm)', 'python', { first: 'warm', retry: 'warm' }),
  runCase('run step (cold, then a pool pod for the retry)', 'python', { first: 'cold', retry: 'warm' }),
  cleanupCase('cleanup (cold)', 'bash'),
  cleanupCase('cleanup (warm)', 'python'),
  poolRefill,
  sessionOpen('session open (own pod)', false),
  sessionOpen('session open (pool pod)', true),
  sessionRun,
  sessionSave,
  sessionRestore,
  sessionRelease,
];

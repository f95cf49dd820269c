/**
 * The session workflow's own logic on a Temporal dev server with its steps mocked: runs one at a time in the order
 * received; a run into a closed session is refused, typed; after the idle timeout the pod is released and the next
 * run gets a new one with the earlier successful runs run again first; the lifetime ends the session; every ending
 * releases the session's pods. Sessions against the real cluster: test/integration/session.test.ts.
 */
import { randomUUID } from 'node:crypto';
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { type ApplicationFailure } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import type { SandboxActivities } from '../../activities';
import type { SessionRunReport, SessionRunSpec } from '../../activities/session-sandbox';
import type { LauncherCheckpoint, StateReport } from '../../core/launcher-protocol';
import { collectedOutput } from '../../core/output';
import { SESSION_HISTORY, sessionRunNotes, type SessionRunResult, type SessionState } from '../../core/session';
import { DEFAULT_POLICY } from '../../core/policy';
import { workflowBundle } from '../../worker/in-process';
import type { session } from '../../workflows';
import { closeUpdate, forkUpdate, runUpdate, stateQuery } from '../../workflows/session';
import { useWorkflowEnvironment } from './temporal-cli';

const testing = useWorkflowEnvironment();

/** Mocked session pods: each run is recorded with its pod; a run's stdout is its code; `slow` runs take a while. */
class MockPods {
  readonly opened: string[] = [];
  readonly runs: { pod: string; seq: number; code: string; start: number; end: number }[] = [];
  released = 0;
  /** The sessions a fork copied a snapshot to. */
  readonly copies: string[] = [];
  /** Pods deleted from outside between runs: a run sent to one finds it gone. */
  readonly gone = new Set<string>();
  /** What counting the task queue's open sessions answers (this one included). */
  openSessions = 1;
  /** With a workspace store: runs whose code starts with `write` change the workspace (a new digest). */
  workspaceStore = false;
  private sig = 'sig-0';
  /** The interpreter's state: a run with an assignment in it changes it (its checkpoint then differs). */
  private stateSha = 'state-0';
  private readonly checkpoints = new Map<number, LauncherCheckpoint>();
  /** A restore of the interpreter's state fails (its runs are then run again instead). */
  failStateRestore = false;
  /** The steps in the order they ran: `run <code>`, `save <seq>`, `restore <seq>`, `state`, `copy`, `drop`. */
  readonly events: string[] = [];

  activities(): Partial<SandboxActivities> {
    return {
      getExecutionPolicy: async () => ({ ...DEFAULT_POLICY, workspaceMaxBytes: this.workspaceStore ? 1 << 20 : 0 }),
      saveWorkspace: async (i: { seq: number; sig: string }) => {
        this.events.push(`save ${i.seq}`);
        return { seq: i.seq, sig: i.sig, bytes: 10, sha256: 'h' };
      },
      restoreWorkspace: async (i: { saved: { seq: number; sig: string } }) => {
        this.events.push(`restore ${i.saved.seq}`);
        this.sig = i.saved.sig;
        return { bytes: 10, seq: i.saved.seq };
      },
      dropWorkspace: async () => {
        this.events.push('drop');
      },
      awaitCheckpoint: async (i: { launcherSeq: number }) =>
        this.checkpoints.get(i.launcherSeq) ?? { error: `no checkpoint after launcher run ${i.launcherSeq}` },
      saveSnapshot: async (i: { seq: number; sig: string; replayed: number; state?: LauncherCheckpoint }) => {
        this.events.push(`save ${i.seq}`);
        return {
          seq: i.seq,
          sig: i.sig,
          bytes: 10,
          sha256: 'h',
          replayed: i.replayed,
          ...(i.state?.sha ? { state: { sha: i.state.sha, bytes: 5, skipped: [] } } : {}),
        };
      },
      copySnapshot: async (i: { from: { sessionId: string; seq: number }; to: { sessionId: string; seq: number } }) => {
        this.events.push(`copy ${i.from.seq}`);
        this.copies.push(i.to.sessionId);
      },
      countOpenSessions: async () => this.openSessions,
      openSessionPod: async (i: { generation: number }) => {
        const pod = `pod-${i.generation}`;
        this.opened.push(pod);
        return { pod, at: Date.now() };
      },
      runInSession: async (spec: SessionRunSpec): Promise<SessionRunReport> => {
        const start = Date.now();
        if (this.gone.has(spec.pod))
          return {
            end: { kind: 'infra', error: { reason: 'SandboxLost', message: 'gone', retryable: false } },
            output: collectedOutput(
              {
                stdout: { text: '', totalBytes: 0, capturedBytes: 0, truncated: false },
                stderr: { text: '', totalBytes: 0, capturedBytes: 0, truncated: false },
                files: [],
                displays: [],
                displaysTotal: 0,
                trailer: null,
                launcherSeen: false,
              },
              Date.now(),
            ),
            session: null,
            sentAt: start,
            notSent: true,
          };
        if (spec.request.code.startsWith('slow')) await new Promise((r) => setTimeout(r, 300));
        let restored: StateReport | undefined;
        // A replay task's runs are recorded one by one, as the launcher runs them.
        for (const code of spec.op === 'replay'
          ? (spec.codes ?? [])
          : spec.op === 'restore'
            ? []
            : [spec.request.code]) {
          this.runs.push({ pod: spec.pod, seq: spec.seq, code, start, end: Date.now() });
          this.events.push(`run ${code}`);
          if (code.startsWith('write')) this.sig = `sig-${spec.seq}`;
          if (code.includes('=')) this.stateSha = `state-${spec.seq}-${code}`;
        }
        if (spec.op === 'restore') {
          this.events.push('state');
          restored = this.failStateRestore ? { error: 'it would not load' } : { names: 2, ms: 1 };
        }
        const fails = spec.request.code.startsWith('fail') || (spec.op === 'restore' && this.failStateRestore);
        if (spec.checkpoint) {
          const last = [...this.checkpoints.values()].pop();
          this.checkpoints.set(spec.seq, { seq: spec.seq, sha: this.stateSha, changed: last?.sha !== this.stateSha });
        }
        return {
          end: { kind: 'finished', exitCode: fails ? 1 : 0, reason: 'Completed', oomKilled: false },
          output: collectedOutput(
            {
              stdout: { text: spec.request.code, totalBytes: 1, capturedBytes: 1, truncated: false },
              stderr: { text: '', totalBytes: 0, capturedBytes: 0, truncated: false },
              files: [],
              displays: [],
              displaysTotal: 0,
              trailer: null,
              launcherSeen: true,
            },
            Date.now(),
          ),
          session: {
            seq: spec.seq,
            interpreter: 'kept',
            why: null,
            next: spec.request.code.startsWith('break') ? 'restart' : 'keep',
            ...(this.workspaceStore ? { workspace: { sig: this.sig, entries: 1, bytes: 1, base: 'sig-0' } } : {}),
            ...(restored ? { state: restored } : {}),
          },
          sentAt: start,
        };
      },
      releaseSessionPods: async () => {
        this.released++;
        this.opened.length = 0;
        return { deleted: 1 };
      },
    };
  }
}

/** The update's failure, with its cause's message (the test's output says why an update failed). */
async function explained<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) err.message += `: ${String(err.cause)}`;
    throw err;
  }
}

async function withSession<T>(
  pods: MockPods,
  options: { idleTimeoutSeconds?: number; maxLifetimeSeconds?: number; replay?: boolean },
  fn: (h: Awaited<ReturnType<typeof start>>) => Promise<T>,
): Promise<T> {
  const taskQueue = `session-${randomUUID()}`;
  const worker = await Worker.create({
    connection: testing.env.nativeConnection,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities: pods.activities(),
  });
  return worker.runUntil(async () => fn(await start(taskQueue, options)));
}

const start = (taskQueue: string, options: object) =>
  testing.env.client.workflow.start<typeof session>('session', {
    taskQueue,
    workflowId: `session-${randomUUID()}`,
    args: [{ options }],
  });

const run = (h: WorkflowHandle<typeof session>, code: string): Promise<SessionRunResult> =>
  explained(h.executeUpdate(runUpdate, { args: [{ code }] }));

test('runs sent at once are run one at a time, in the order received, on one pod', async () => {
  const pods = new MockPods();
  await withSession(pods, {}, async (h) => {
    const results = await Promise.all(['slow-1', 'slow-2', 'slow-3'].map((code) => run(h, code)));
    // Whatever order they reached the session in, each run's number is its place in that order.
    const inOrder = [...results].sort((a, b) => a.seq - b.seq);
    expect(inOrder.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(pods.runs.map((r) => r.code)).toEqual(inOrder.map((r) => r.stdout));
    for (let i = 1; i < pods.runs.length; i++) expect(pods.runs[i].start).toBeGreaterThanOrEqual(pods.runs[i - 1].end);
    expect(new Set(pods.runs.map((r) => r.pod))).toEqual(new Set(['pod-1']));
    expect(results[0]).toMatchObject({ sessionId: h.workflowId, sandbox: 'session', status: 'succeeded' });
    const closed: SessionState = await h.executeUpdate(closeUpdate);
    expect(closed).toMatchObject({ state: 'closed', closedBecause: 'closed', runs: 3 });
    expect(pods.released).toBe(1);
  });
});

test('a run into a closed session is refused, typed; so is bad input, before anything runs', async () => {
  const pods = new MockPods();
  await withSession(pods, {}, async (h) => {
    const bad = await h
      .executeUpdate(runUpdate, { args: [{ code: 'x', timeoutSeconds: -1 }] })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(WorkflowUpdateFailedError);
    expect(((bad as WorkflowUpdateFailedError).cause as ApplicationFailure).type).toBe('InvalidInput');
    await h.executeUpdate(closeUpdate);
    const refused = await run(h, 'x').catch((e: unknown) => e);
    // Temporal refuses updates to a completed workflow; a closing one refuses them itself.
    expect(refused).toBeInstanceOf(Error);
    expect(pods.runs).toHaveLength(0);
  });
});

test('idle: the pod is released, the session stays; the next run gets a new pod, the successful runs run again first', async () => {
  const pods = new MockPods();
  await withSession(pods, { idleTimeoutSeconds: 1 }, async (h) => {
    await run(h, 'x = 1');
    await run(h, 'fail-this');
    await run(h, 'y = 2');
    const until = Date.now() + 10_000;
    while (pods.released === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(pods.released).toBe(1);
    expect(await h.query(stateQuery)).toMatchObject({ state: 'open', runs: 3 });
    const resumed = await run(h, 'print(x + y)');
    expect(resumed.seq).toBe(4);
    expect(resumed.session).toMatchObject({ pod: 'pod-2', interpreter: 'restarted', restored: { runs: 2 } });
    // On the new pod: the successful runs again, in order, then the new one; the failed one is not run again.
    expect(pods.runs.filter((r) => r.pod === 'pod-2').map((r) => r.code)).toEqual(['x = 1', 'y = 2', 'print(x + y)']);
    await h.executeUpdate(closeUpdate);
  });
});

test('the lifetime ends the session and releases its pods', async () => {
  const pods = new MockPods();
  await withSession(pods, { maxLifetimeSeconds: 2 }, async (h) => {
    await run(h, 'x = 1');
    const final = await h.result();
    expect(final).toMatchObject({ state: 'closed', closedBecause: 'lifetime', runs: 1 });
    expect(pods.released).toBe(1);
  });
});

test('a cancelled session ends as a closed one: its pods go, its state says why', async () => {
  const pods = new MockPods();
  await withSession(pods, {}, async (h) => {
    await run(h, 'x = 1');
    await h.cancel();
    const final = await h.result();
    expect(final).toMatchObject({ state: 'closed', closedBecause: 'cancelled', runs: 1 });
    expect(pods.released).toBe(1);
  });
});

test('a long session continues as new every SESSION_HISTORY.runsPerHistory runs: numbering, state and replay carry over', async () => {
  const pods = new MockPods();
  await withSession(pods, { idleTimeoutSeconds: 3 }, async (started) => {
    const h = testing.env.client.workflow.getHandle<typeof session>(started.workflowId);
    const total = SESSION_HISTORY.runsPerHistory + 10;
    for (let i = 1; i <= total; i++) expect((await run(h, `n = ${i}`)).seq).toBe(i);
    const described = await h.describe();
    expect(described.runId).not.toBe(started.firstExecutionRunId);
    expect(described.historyLength).toBeLessThan(SESSION_HISTORY.runsPerHistory * 15);
    expect(await h.query(stateQuery)).toMatchObject({ state: 'open', runs: total });
    // The replay list came along: after idle, every run so far is run again on the new pod.
    while (pods.released === 0) await new Promise((r) => setTimeout(r, 100));
    const resumed = await run(h, 'print(n)');
    expect(resumed).toMatchObject({ seq: total + 1, session: { pod: 'pod-2', restored: { runs: total } } });
    expect(pods.runs.filter((r) => r.pod === 'pod-2')).toHaveLength(total + 1);
    await h.executeUpdate(closeUpdate);
  });
});

test('the runs kept for replay stop at SESSION_HISTORY.replayBytes; a restore says how many were not run again', async () => {
  const pods = new MockPods();
  await withSession(pods, { idleTimeoutSeconds: 1 }, async (h) => {
    const big = (tag: string) => `# ${tag}\n${'#'.repeat(200 * 1024)}`;
    await run(h, big('a'));
    await run(h, big('b'));
    await run(h, big('c')); // past the cap: not kept, nor is anything after it
    await run(h, 'x = 1');
    while (pods.released === 0) await new Promise((r) => setTimeout(r, 100));
    const resumed = await run(h, 'print(1)');
    expect(resumed.session.restored).toMatchObject({ runs: 2, notReplayed: 2 });
    expect(sessionRunNotes(resumed).join(' ')).toContain('2 run(s) after those were past the replay cap');
    expect(pods.runs.filter((r) => r.pod === 'pod-2').map((r) => r.code.slice(0, 3))).toEqual(['# a', '# b', 'pri']);
    await h.executeUpdate(closeUpdate);
  });
});

test('a pod gone between runs: the next run gets a new pod and the state back, and runs (nothing was lost)', async () => {
  const pods = new MockPods();
  await withSession(pods, {}, async (h) => {
    await run(h, 'x = 1');
    pods.gone.add('pod-1');
    const r = await run(h, 'print(x)');
    expect(r).toMatchObject({ status: 'succeeded', seq: 2, session: { pod: 'pod-2', restored: { runs: 1 } } });
    expect(pods.runs.filter((p) => p.pod === 'pod-2').map((p) => p.code)).toEqual(['x = 1', 'print(x)']);
    await h.executeUpdate(closeUpdate);
  });
});

test('past the cap on open sessions a session ends at once; its runs are refused, naming the limit', async () => {
  const pods = new MockPods();
  pods.openSessions = DEFAULT_POLICY.maxOpenSessions + 1;
  await withSession(pods, {}, async (h) => {
    const final = await h.result();
    expect(final).toMatchObject({ state: 'closed', closedBecause: 'limit', runs: 0 });
    expect(final.refused).toContain(`the limit is ${DEFAULT_POLICY.maxOpenSessions}`);
    expect(pods.opened).toEqual([]);
  });
});

test('a run sent with the start of a session past the cap is refused, typed, naming the limit', async () => {
  const pods = new MockPods();
  pods.openSessions = DEFAULT_POLICY.maxOpenSessions + 5;
  await withSession(pods, {}, async (h) => {
    const refused = await h.executeUpdate(runUpdate, { args: [{ code: '1' }] }).catch((e: unknown) => e);
    if (refused instanceof WorkflowUpdateFailedError)
      expect((refused.cause as ApplicationFailure).message).toMatch(/^SessionLimit: \d+ sessions are open/);
    else expect(refused).toBeInstanceOf(Error); // the session had already ended: Temporal refuses it
    expect(pods.runs).toHaveLength(0);
  });
});

test('with a store: a snapshot after each run that changed the files or the state, none after one that did not; a new pod gets the newest (files and state) and runs nothing again; close deletes them', async () => {
  const pods = new MockPods();
  pods.workspaceStore = true;
  await withSession(pods, {}, async (h) => {
    for (const code of ['write a', 'x = 1', 'print(x)', 'y = 2', 'print(y)']) await run(h, code);
    expect(await h.query(stateQuery)).toMatchObject({
      workspace: { seq: 4, bytes: 10 },
      snapshots: [1, 2, 4].map((seq) => ({ seq, bytes: 10, state: true })),
    });
    pods.gone.add('pod-1');
    const r = await run(h, 'e');
    expect(r.session.restored).toMatchObject({ runs: 0, workspace: { seq: 4 }, state: { seq: 4, names: 2 } });
    expect(sessionRunNotes(r).join(' ')).toMatch(/its state was loaded as it was after run 4/);
    await h.executeUpdate(closeUpdate);
  });
  expect(pods.events).toEqual([
    'run write a',
    'save 1',
    'run x = 1',
    'save 2',
    'run print(x)',
    'run y = 2',
    'save 4',
    'run print(y)',
    // pod-2: the newest snapshot's files, then its state; nothing runs again.
    'restore 4',
    'state',
    'run e',
    'drop',
  ]);
});

test('a state that will not load: the runs it held run again (one step), its files put back over theirs, then the rest', async () => {
  const pods = new MockPods();
  pods.workspaceStore = true;
  pods.failStateRestore = true;
  await withSession(pods, {}, async (h) => {
    for (const code of ['write a', 'x = 1']) await run(h, code);
    pods.gone.add('pod-1');
    const r = await run(h, 'print(x)');
    expect(r.session.restored).toMatchObject({ runs: 2, state: { error: 'it would not load' } });
    expect(sessionRunNotes(r).join(' ')).toMatch(
      /rebuilt by running its 2 earlier run\(s\) again .*could not be loaded: it would not load/,
    );
    await h.executeUpdate(closeUpdate);
  });
  // The state the runs rebuilt is not the saved one: a snapshot of it follows the run.
  expect(pods.events).toEqual([
    'run write a',
    'save 1',
    'run x = 1',
    'save 2',
    'restore 2',
    'state',
    'run write a',
    'run x = 1',
    'restore 2',
    'run print(x)',
    'save 3',
    'drop',
  ]);
});

test('a run that left the interpreter unusable is not run again on a new pod', async () => {
  const pods = new MockPods();
  await withSession(pods, {}, async (h) => {
    await run(h, 'x = 1');
    await run(h, 'break the interpreter');
    // The launcher restarts the interpreter in its own pod: no new pod for it.
    expect(pods.opened).toEqual(['pod-1']);
    pods.gone.add('pod-1');
    const r = await run(h, 'print(x)');
    expect(r.session.restored).toMatchObject({ runs: 1 });
    expect(pods.runs.map((p) => `${p.pod} ${p.code}`)).toEqual([
      'pod-1 x = 1',
      'pod-1 break the interpreter',
      'pod-2 x = 1',
      'pod-2 print(x)',
    ]);
    await h.executeUpdate(closeUpdate);
  });
});

test('fork: new sessions from the snapshot as of a run (the last, or an earlier one), each its own copy; the parent goes on', async () => {
  const pods = new MockPods();
  pods.workspaceStore = true;
  await withSession(pods, {}, async (h) => {
    for (const code of ['x = 1', 'write f', 'y = 2', 'z = 3']) await run(h, code);
    const forks = await h.executeUpdate(forkUpdate, { args: [{ count: 2 }] });
    // Numbered, not drawn: the same on every replay, with or without interceptors that draw random numbers.
    expect(forks).toEqual([`${h.workflowId}.fork-1`, `${h.workflowId}.fork-2`]);
    expect(pods.copies).toEqual(forks);
    const earlier = await h.executeUpdate(forkUpdate, { args: [{ atRun: 2 }] });
    const bad = await h.executeUpdate(forkUpdate, { args: [{ atRun: 9 }] }).catch((e: unknown) => e);
    expect(((bad as WorkflowUpdateFailedError).cause as ApplicationFailure).type).toBe('InvalidInput');
    for (const id of [...forks, ...earlier]) {
      const f = testing.env.client.workflow.getHandle<typeof session>(id);
      expect(await f.query(stateQuery)).toMatchObject({
        state: 'open',
        runs: 0,
        forkedFrom: { sessionId: h.workflowId },
      });
      const first = await run(f, 'print(x)');
      expect(first.session.restored).toMatchObject({ state: { names: 2 } });
      await f.executeUpdate(closeUpdate);
    }
    // The parent's next run is on its own pod, its state untouched.
    expect((await run(h, 'print(z)')).session.pod).toBe('pod-1');
    await h.executeUpdate(closeUpdate);
  });
  expect(pods.events.filter((e) => e.startsWith('copy'))).toEqual(['copy 4', 'copy 4', 'copy 2']);
});

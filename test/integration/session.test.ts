/**
 * Sessions on the real stack: state that lives across runs in one gVisor pod (a variable, an import, a file, the
 * working directory), a trailing expression shown as a notebook cell shows it, a figure-like file coming back, a run
 * past its limit ending that run and not the session, a session attached from another client, the pod lost under a
 * run (the run ends SandboxLost, never re-run; the next run gets a new pod with its state rebuilt), idle suspend and
 * resume, and close leaving no pod behind.
 */
import {
  SandboxClient,
  SessionClosedError,
  SessionLimitError,
  type Session,
  type SessionOptions,
  type SessionRunResult,
  type SessionState,
} from '../../client';
import { s3WorkspaceStore } from '../../activities/workspace-store';
import { openSessionsQuery } from '../../core/session';
import {
  adminKube,
  deleteSessionPod,
  eventually,
  SANDBOX_NAMESPACE,
  sessionPods,
  startWorker,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();
let w: TestWorker;

beforeAll(async () => {
  // No pools: the node's CPU goes to the sessions.
  w = await startWorker({ DS_WARM_POOL_SIZE: '0' });
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const podsOf = (sessionId: string) => sessionPods(kube, sessionId);

/** Opens a session for `fn`, then closes it, whatever `fn` did, and checks that none of its pods is left. */
async function inSession(options: SessionOptions, fn: (session: Session) => Promise<void>): Promise<SessionState> {
  const session = await w.client.openSession(options);
  let closed: SessionState;
  try {
    await fn(session);
  } finally {
    closed = await session.close();
    expect(await podsOf(session.id)).toEqual([]);
  }
  return closed;
}

const ok = (r: SessionRunResult) => {
  if (r.status !== 'succeeded') throw new Error(`run ${r.seq}: ${r.status} ${r.stderr} ${r.error?.message ?? ''}`);
  return r;
};

test('variables, imports, files and the working directory persist across runs, under gVisor; close leaves nothing', async () => {
  const closed = await inSession({}, async (session) => {
    const first = ok(
      await session.run('import os, platform\nx = 6 * 7\nos.chdir("/tmp")\nopen("kept.txt", "w").write("kept")\nx'),
    );
    expect(first.stdout).toBe('42\n');
    expect(first).toMatchObject({
      sessionId: session.id,
      seq: 1,
      sandbox: 'session',
      session: { interpreter: 'started' },
    });
    const second = ok(await session.run('print(x, os.getcwd(), open("kept.txt").read())'));
    expect(second.stdout).toBe('42 /tmp kept\n');
    expect(second.session).toMatchObject({ interpreter: 'kept', pod: first.session.pod });
    // Under gVisor, as every sandbox.
    expect(ok(await session.run('open("/proc/version").read()')).stdout).toMatch(/gvisor/i);
    // A file under /sandbox/out comes back with the run that wrote it, and only with that one.
    const fig = ok(
      await session.run(
        'os.makedirs("/sandbox/out", exist_ok=True)\nopen("/sandbox/out/plot.svg", "w").write("<svg/>")\nNone',
      ),
    );
    expect(fig.outputFiles.map((f) => [f.name, f.content])).toEqual([['plot.svg', '<svg/>']]);
    expect(ok(await session.run('1')).outputFiles).toEqual([]);
    // Another process attaches by id and sees the same interpreter.
    expect(ok(await w.client.getSession(session.id).run('x + 1')).stdout).toBe('43\n');
  });
  expect(closed).toMatchObject({ state: 'closed', closedBecause: 'closed' });
  await expect(w.client.getSession(closed.sessionId).run('x')).rejects.toBeInstanceOf(SessionClosedError);
});

test('expiry: past maxLifetimeSeconds the session ends by itself and leaves nothing (pods, stored workspace)', async () => {
  const session = await w.client.openSession({ maxLifetimeSeconds: 8 });
  ok(await session.run('open("kept.txt", "w").write("kept")'));
  if (w.config.workspaceStore)
    await eventually(
      () => session.state(),
      (s) => s.workspace !== undefined,
      30_000,
    );
  const handle = w.client.temporal.workflow.getHandle(session.id);
  const ended = (await handle.result()) as SessionState;
  expect(ended).toMatchObject({ state: 'closed', closedBecause: 'lifetime', runs: 1 });
  expect(await podsOf(session.id)).toEqual([]);
  if (w.config.workspaceStore) expect(await s3WorkspaceStore(w.config.workspaceStore).get(session.id)).toBeUndefined();
  await expect(session.run('1')).rejects.toBeInstanceOf(SessionClosedError);
});

test('cancel() stops a run in flight: its call fails with a typed SessionClosedError saying so; nothing is left', async () => {
  const session = await w.client.openSession({});
  ok(await session.run('x = 1'));
  const inFlight = session.run('import time\ntime.sleep(120)');
  inFlight.catch(() => undefined);
  await eventually(
    () => session.state(),
    (s) => s.pod !== undefined && s.runs === 1,
  );
  await new Promise((r) => setTimeout(r, 1500));
  const ended = await session.cancel();
  expect(ended).toMatchObject({ state: 'closed', closedBecause: 'cancelled' });
  await expect(inFlight).rejects.toBeInstanceOf(SessionClosedError);
  await expect(inFlight).rejects.toThrow(/cancel/);
  expect(await podsOf(session.id)).toEqual([]);
});

test('a run past its limit ends that run, not the session; a failing run is a result', async () => {
  await inSession({ timeoutSeconds: 2 }, async (session) => {
    ok(await session.run('kept = "yes"'));
    const slow = await session.run('import time\nwhile True:\n    time.sleep(0.1)');
    expect(slow).toMatchObject({ status: 'timed_out', seq: 2 });
    expect(slow.stderr).toMatch(/KeyboardInterrupt/);
    const failed = await session.run('1/0');
    expect(failed).toMatchObject({ status: 'failed', exitCode: 1 });
    expect(failed.stderr).toMatch(/ZeroDivisionError/);
    expect(ok(await session.run('kept')).stdout).toBe("'yes'\n");
  });
});

test('the pod lost under a run: that run ends sandbox_lost (never re-run); the next gets a new pod, its state back (nothing run again)', async () => {
  await inSession({}, async (session) => {
    const first = ok(await session.run('import os\ncount = 0\ncount += 1\nos.getpid() > 0'));
    const inFlight = session.run('import time\ntime.sleep(60)');
    // Once the run is in the pod, the pod goes.
    await eventually(
      () => session.state(),
      (s) => s.runs === 1 && s.pod !== undefined,
    );
    await new Promise((r) => setTimeout(r, 1500));
    await kube.core.deleteNamespacedPod({
      name: first.session.pod,
      namespace: SANDBOX_NAMESPACE,
      gracePeriodSeconds: 0,
    });
    const lost = await inFlight;
    expect(lost).toMatchObject({ status: 'sandbox_lost', error: { reason: 'SandboxLost', retryable: false } });
    const next = ok(await session.run('count'));
    expect(next.stdout).toBe('1\n');
    expect(next.session).toMatchObject({
      interpreter: 'restarted',
      restored: { runs: 0, state: { names: expect.any(Number) } },
    });
    expect(next.session.pod).not.toBe(first.session.pod);
  });
});

test('the pod deleted between runs: the next run gets a new pod with the state back, and runs', async () => {
  await inSession({}, async (session) => {
    const first = ok(await session.run('count = 41'));
    await deleteSessionPod(kube, session.id, first.session.pod);
    const next = ok(await session.run('count + 1'));
    expect(next.stdout).toBe('42\n');
    expect(next.session).toMatchObject({
      interpreter: 'restarted',
      restored: { runs: 0, state: { names: expect.any(Number) } },
    });
    expect(next.session.restored!.podMs).toBeGreaterThan(0);
    expect(next.session.pod).not.toBe(first.session.pod);
  });
});

test('idle: the pod is released and the session stays open; the next run resumes on a new pod with its variables', async () => {
  await inSession({ idleTimeoutSeconds: 2 }, async (session) => {
    const first = ok(await session.run('greeting = "hello"'));
    await eventually(
      () => podsOf(session.id),
      (pods) => pods.length === 0,
      60_000,
    );
    expect(await session.state()).toMatchObject({ state: 'open', runs: 1 });
    const resumed = ok(await session.run('greeting'));
    expect(resumed.stdout).toBe("'hello'\n");
    expect(resumed.session).toMatchObject({
      interpreter: 'restarted',
      restored: { runs: 0, state: { names: expect.any(Number) } },
    });
    expect(resumed.session.pod).not.toBe(first.session.pod);
  });
});

test('a bash session: one shell for every run (working directory, variables, exports), rebuilt on a new pod', async () => {
  await inSession({ language: 'bash' }, async (session) => {
    const first = ok(await session.run('mkdir -p proj && cd proj\nCOUNT=41\nexport GREETING=hi\necho started'));
    expect(first).toMatchObject({ language: 'bash', stdout: 'started\n', session: { interpreter: 'started' } });
    const second = ok(await session.run('echo "$((COUNT + 1)) $(basename "$PWD") $(bash -c \'echo $GREETING\')"'));
    expect(second.stdout).toBe('42 proj hi\n');
    const failed = await session.run('false');
    expect(failed).toMatchObject({ status: 'failed', exitCode: 1 });
    await deleteSessionPod(kube, session.id, second.session.pod);
    const back = ok(await session.run('echo "$COUNT $(basename "$PWD") $GREETING"'));
    expect(back.stdout).toBe('41 proj hi\n');
    expect(back.session.restored).toMatchObject({ runs: 0, state: { names: expect.any(Number) } });
  });
});

test("live output: a run's output reaches its callbacks while it runs, once and in order; replayed runs' never does", async () => {
  await inSession({}, async (session) => {
    ok(await session.run('print("from an earlier run")\nx = 1'));
    const pieces: { text: string; at: number }[] = [];
    const r = ok(
      await session.run('import time\nfor i in range(5):\n    print("tick", i, flush=True)\n    time.sleep(1.2)', {
        onStdout: (text) => pieces.push({ text, at: Date.now() }),
      }),
    );
    const answeredAt = Date.now();
    expect(pieces.map((p) => p.text).join('')).toBe(r.stdout);
    expect(r.stdout).toBe('tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n');
    // The first lines came while the run ran, seconds before its answer.
    expect(pieces[0].at).toBeLessThan(answeredAt - 1500);

    await deleteSessionPod(kube, session.id, r.session.pod);
    const seen: string[] = [];
    const back = ok(await session.run('print(x + 1)', { onStdout: (t) => seen.push(t) }));
    expect(back.session.restored).toMatchObject({ runs: 0, state: { names: expect.any(Number) } });
    expect(seen.join('')).toBe('2\n');
  });
});

test("one session cannot reach another's pod or files", async () => {
  const a = await w.client.openSession({ timeoutSeconds: 5 });
  const b = await w.client.openSession({ timeoutSeconds: 5 });
  try {
    // A keeps a listener open in its interpreter (a thread, so the run ends) and a secret file.
    ok(
      await a.run(
        'import socket, threading\nsrv = socket.socket()\nsrv.bind(("0.0.0.0", 8080))\nsrv.listen(5)\n' +
          'threading.Thread(target=lambda: [srv.accept() for _ in iter(int, 1)], daemon=True).start()\n' +
          'open("/tmp/secret.txt", "w").write("a-only")',
      ),
    );
    const podA = (await a.state()).pod!;
    const ip = (await kube.core.readNamespacedPod({ name: podA, namespace: SANDBOX_NAMESPACE })).status!.podIP!;
    // A reaches its own listener; B cannot reach A's pod, nor see A's file.
    expect(
      ok(await a.run('c = socket.create_connection(("127.0.0.1", 8080), timeout=2)\nc.close()\n"ok"')).stdout,
    ).toBe("'ok'\n");
    const probe = await b.run(
      `import socket, os\ntry:\n    socket.create_connection((${JSON.stringify(ip)}, 8080), timeout=3)\n    print("connected")\n` +
        `except OSError as e:\n    print("refused", type(e).__name__)\nprint(os.path.exists("/tmp/secret.txt"))`,
    );
    expect(probe.stdout).toMatch(/^refused \w+\nFalse\n$/);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
  expect([...(await podsOf(a.id)), ...(await podsOf(b.id))]).toEqual([]);
});

test('300 runs in one session: it continues as new on the way, and every run keeps its place and the state', async () => {
  let history: { firstRunId: string; runId: string } | undefined;
  const closed = await inSession({}, async (session) => {
    ok(await session.run('n = 0\nseen = []'));
    for (let i = 1; i < 300; i++) {
      const r = ok(await session.run(`n += 1\nseen.append(${i})\nn`));
      expect(r.seq).toBe(i + 1);
      expect(r.stdout).toBe(`${i}\n`);
    }
    expect(ok(await session.run('seen == list(range(1, 300))')).stdout).toBe('True\n');
    const described = await w.client.temporal.workflow.getHandle(session.id).describe();
    history = {
      firstRunId: described.raw.workflowExecutionInfo!.firstRunId!,
      runId: described.runId,
    };
  });
  expect(closed).toMatchObject({ state: 'closed', runs: 301 });
  // The session's workflow continued as new (each history stays small); the session is one all along.
  expect(history!.runId).not.toBe(history!.firstRunId);
});

test('the cap on open sessions: one more is refused, typed and naming the limit, at open (or at its first run)', async () => {
  const capped = await startWorker({ DS_MAX_OPEN_SESSIONS: '2' });
  const generous = await SandboxClient.connect({
    temporal: capped.config.temporal,
    taskQueue: capped.config.temporal.taskQueue,
    policy: { ...capped.config.policy, maxOpenSessions: 100 },
  });
  const opened: Session[] = [];
  try {
    opened.push(await capped.client.openSession(), await capped.client.openSession());
    // Both past their own count (the state says when it is set), and both open.
    for (const o of opened)
      expect(
        await eventually(
          () => o.state(),
          (st) => st.openedAt > 0,
        ),
      ).toMatchObject({ state: 'open' });
    await eventually(
      async () =>
        (await capped.client.temporal.workflow.count(openSessionsQuery(capped.config.temporal.taskQueue))).count,
      (n) => n === 2,
      120_000, // Temporal's visibility, which the cap counts with, may lag behind a start
    );
    const refused = await capped.client.openSession().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(SessionLimitError);
    expect(refused).toMatchObject({ limit: 2, open: 2 });
    expect((refused as Error).message).toMatch(/SessionLimit: 2 sessions are open on task queue \S+, the limit is 2/);
    // A client that believes the limit is higher opens one; the session itself refuses, and its first run says why.
    const third = await generous.openSession();
    const run = await third.run('1').catch((e: unknown) => e);
    expect(run).toBeInstanceOf(SessionClosedError);
    expect((run as Error).message).toMatch(/SessionLimit: \d+ sessions are open .* the limit is 2/);
    expect(await podsOf(third.id)).toEqual([]);
    // One closed, one can open again.
    await opened.shift()!.close();
    await eventually(
      async () =>
        (await capped.client.temporal.workflow.count(openSessionsQuery(capped.config.temporal.taskQueue))).count,
      (n) => n === 1,
      120_000,
    );
    opened.push(await capped.client.openSession());
    expect(ok(await opened[1].run('6 * 7')).stdout).toBe('42\n');
  } finally {
    await Promise.all(opened.map((s) => s.close()));
    await generous.close();
    await capped.stop();
  }
});

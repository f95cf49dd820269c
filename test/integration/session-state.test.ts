/**
 * A session's state on the real stack, kept as state and not as code: after each run the interpreter's state is
 * checkpointed (dill, in the image) into the session's snapshot in the workspace store; a new pod loads it. A random
 * draw, a timestamp, a failed run's assignments, a function and an instance, a 50 MB workspace file come back the same
 * after the pod is lost, with nothing run again; bash keeps its variables and functions the same way. Forks start
 * from the snapshot as of a run (the last, or an earlier one), three at once, and change nothing in the parent.
 * Hostile runs in one session each end with the program's own status, and the next run answers with its output and
 * files: closed or redirected fds 1 and 2, a thread that prints forever, a memory bomb (oom_killed), a replaced
 * sys.stdout, sys.exit in a thread, a run that deletes the session's files.
 */
import type { Session, SessionRunResult } from '../../client';
import { s3WorkspaceStore } from '../../activities/workspace-store';
import { adminKube, deleteSessionPod, sessionPods, startWorker, type TestWorker } from '../helpers/stack';

jest.setTimeout(300_000);
const kube = adminKube();
let w: TestWorker;

beforeAll(async () => {
  w = await startWorker({ DS_WARM_POOL_SIZE: '0' });
  if (!w.config.workspaceStore) throw new Error('the worker has no workspace store: is the local stack up?');
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const opened: Session[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) {
    await s.close().catch(() => undefined);
    expect(await sessionPods(kube, s.id)).toEqual([]);
  }
});

async function open(options: Parameters<TestWorker['client']['openSession']>[0] = {}): Promise<Session> {
  const s = await w.client.openSession(options);
  opened.push(s);
  return s;
}

const ok = (r: SessionRunResult) => {
  if (r.status !== 'succeeded') throw new Error(`run ${r.seq}: ${r.status} ${r.stderr} ${r.error?.message ?? ''}`);
  return r;
};

/** The session's snapshot after run `seq` is in the store (the save follows the answer). */
async function snapshotAfter(s: Session, seq: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const st = await s.state();
    if (st.snapshots?.some((x) => x.seq >= seq)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no snapshot after run ${seq}: ${JSON.stringify(await s.state())}`);
}

const VALUES = 'print(repr((x, t, partial, twice(21), box.v, len(big))))';

test('after the pod is lost, the next run sees the same values and files; nothing is run again', async () => {
  const s = await open();
  ok(
    await s.run(
      'import random, time\nx = random.random()\nt = time.time()\ndef twice(v):\n    return 2 * v\nclass Box:\n    def __init__(self, v):\n        self.v = v\nbox = Box(3)',
    ),
  );
  const failed = await s.run('partial = "assigned before the error"\nraise ValueError("after it")');
  expect(failed.status).toBe('failed');
  // A 50 MB file (it does not compress) in the workspace, and a list in memory.
  ok(await s.run('import os\nopen("data.bin", "wb").write(os.urandom(50 * 1024 * 1024))\nbig = list(range(100000))'));
  const before = ok(await s.run(VALUES)).stdout;
  await snapshotAfter(s, 3);
  const pod = (await s.state()).pod!;
  await deleteSessionPod(kube, s.id, pod);
  const after = await s.run(`${VALUES}\nprint(os.path.getsize("data.bin"))`);
  if (after.status !== 'succeeded') throw new Error(`${after.stderr} ${JSON.stringify(after.session)}`);
  expect(after.stdout).toBe(`${before}${50 * 1024 * 1024}\n`);
  expect(after.session.pod).not.toBe(pod);
  expect(after.session.restored).toMatchObject({
    runs: 0,
    workspace: { seq: expect.any(Number), bytes: expect.any(Number), ms: expect.any(Number) },
    state: { names: expect.any(Number), ms: expect.any(Number) },
    podMs: expect.any(Number),
  });
});

test('bash: variables, exports, arrays, functions and the working directory come back from the checkpoint', async () => {
  const s = await open({ language: 'bash' });
  ok(
    await s.run('mkdir -p proj && cd proj\nDRAW=$RANDOM\nexport GREETING=hi\nLIST=(a "b c")\ntwice() { echo "$1$1"; }'),
  );
  const before = ok(await s.run('echo "$DRAW $GREETING ${LIST[1]} $(basename "$PWD") $(twice ab)"')).stdout;
  await snapshotAfter(s, 1);
  await deleteSessionPod(kube, s.id, (await s.state()).pod!);
  const after = ok(await s.run('echo "$DRAW $GREETING ${LIST[1]} $(basename "$PWD") $(twice ab)"'));
  expect(after.stdout).toBe(before);
  expect(after.session.restored).toMatchObject({ runs: 0, state: { names: expect.any(Number) } });
});

test('forks: at the last run and at an earlier one each see that run state; three at once; the parent is untouched', async () => {
  const s = await open();
  ok(await s.run('x = 1\nopen("f.txt", "w").write("one")'));
  ok(await s.run('x = 2\nopen("f.txt", "w").write("two")'));
  await snapshotAfter(s, 2);
  const [last] = await s.fork();
  const [earlier] = await s.fork({ atRun: 1 });
  const three = await s.fork({ count: 3 });
  opened.push(last, earlier, ...three);
  expect(ok(await last.run('print(x, open("f.txt").read())')).stdout).toBe('2 two\n');
  expect(ok(await earlier.run('print(x, open("f.txt").read())')).stdout).toBe('1 one\n');
  // Writing in a fork changes nothing in the parent (nor in the other forks).
  ok(await last.run('x = 99\nopen("f.txt", "w").write("fork")'));
  const runs = await Promise.all(three.map((f, i) => f.run(`x += ${i + 10}\nprint(x, open("f.txt").read())`)));
  expect(runs.map((r) => ok(r).stdout).sort()).toEqual(['12 two\n', '13 two\n', '14 two\n']);
  expect(ok(await s.run('print(x, open("f.txt").read())')).stdout).toBe('2 two\n');
  expect(await last.state()).toMatchObject({ forkedFrom: { sessionId: s.id, atRun: 2 } });
  // A fork's snapshots are its own: closing it deletes them, and the parent's are still there.
  const store = s3WorkspaceStore(w.config.workspaceStore!);
  await last.close();
  await snapshotAfter(s, 2);
  expect(await store.get(s.id, (await s.state()).snapshots!.at(-1)!.seq)).toBeDefined();
});

describe('hostile runs in one session: each ends with its own status; the next run answers with its output and files', () => {
  let s: Session;
  beforeAll(async () => {
    s = await w.client.openSession({ timeoutSeconds: 20 });
    ok(await s.run('kept = "still here"\nopen("keep.txt", "w").write("file kept")'));
  });
  afterAll(async () => {
    await s.close();
    expect(await sessionPods(kube, s.id)).toEqual([]);
  });

  /** The run that follows a hostile one: it answers, with the session's state and its file (unless deleted). */
  async function answers(files = true): Promise<SessionRunResult> {
    const r = ok(await s.run(`print(kept${files ? ', open("keep.txt").read()' : ''})`));
    expect(r.stdout).toBe(files ? 'still here file kept\n' : 'still here\n');
    return r;
  }

  test('closing fds 1 and 2: the run succeeds; the next gets a new interpreter with the state back', async () => {
    const r = await s.run('import os\nos.close(1)\nos.close(2)');
    expect(r.status).toBe('succeeded');
    const next = await answers();
    expect(next.session).toMatchObject({ interpreter: 'restarted', state: { names: expect.any(Number) } });
  });

  test('redirecting fd 1 and replacing sys.stdout: the program own doing; the session answers', async () => {
    const r = await s.run('import os, sys, io\nsys.stdout = io.StringIO()\nprint("swallowed")');
    expect(r).toMatchObject({ status: 'succeeded', stdout: '' });
    await answers();
    const dup = await s.run('import os\nos.dup2(os.open("/dev/null", os.O_WRONLY), 1)');
    expect(dup.status).toBe('succeeded');
    await answers();
  });

  test('a thread that prints forever: counted between runs, never fatal', async () => {
    const r = await s.run(
      'import threading, sys, time\ndef spam():\n    while True:\n        sys.stdout.write("x" * 200 + "\\n")\n        time.sleep(0.001)\nthreading.Thread(target=spam, daemon=True).start()',
    );
    expect(r.status).toBe('succeeded');
    await new Promise((res) => setTimeout(res, 2000));
    // The thread goes on writing to stdout: the run answers on stderr.
    const next = ok(await s.run('print("answer", kept, file=sys.stderr)'));
    expect(next.stderr).toBe('answer still here\n');
    expect(next.session.leftover?.bytes).toBeGreaterThan(1000);
  });

  test('sys.exit in a thread ends the thread only', async () => {
    const r = await s.run(
      'import threading, sys\nt = threading.Thread(target=sys.exit, args=(3,))\nt.start()\nt.join()\nprint("on")',
    );
    expect(r).toMatchObject({ status: 'succeeded', stdout: expect.stringContaining('on\n') });
  });

  test('a memory bomb is oom_killed; the next run gets a new pod with the state back', async () => {
    const r = await s.run('b = bytearray(3 * 1024 ** 3)');
    expect(r.status).toBe('oom_killed');
    const next = await answers();
    expect(next.session.restored).toMatchObject({ state: { names: expect.any(Number) } });
  });

  test("a run that deletes the session's files: its own doing; the session goes on without them", async () => {
    const r = await s.run(
      'import shutil, os\nfor n in os.listdir("."):\n    shutil.rmtree(n, ignore_errors=True) if os.path.isdir(n) else os.remove(n)',
    );
    expect(r.status).toBe('succeeded');
    await answers(false);
  });
});

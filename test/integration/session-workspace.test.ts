/**
 * A session's workspace kept outside its pod, on the real stack (SeaweedFS's S3 gateway, pods/exec into gVisor):
 * a run that changes files (or, with replay on, the interpreter's state) is a snapshot after its answer; a new pod gets
 * the newest back exactly (with replay off: the files alone; with replay on: files and state, so an appended file is
 * not appended twice and a random value is not drawn again); runs that change nothing save nothing; a workspace past
 * the worker's limit is refused and said; the session's end deletes its objects.
 */
import { s3WorkspaceStore } from '../../activities/workspace-store';
import type { Session, SessionRunResult, SessionState } from '../../client';
import { adminKube, deleteSessionPod, eventually, startWorker, type TestWorker } from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();
let w: TestWorker;

beforeAll(async () => {
  w = await startWorker({ DS_WARM_POOL_SIZE: '0' });
  if (!w.config.workspaceStore) throw new Error('the test worker has no workspace store (DS_WORKSPACE_STORE)');
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const store = () => s3WorkspaceStore(w.config.workspaceStore!);

const ok = (r: SessionRunResult) => {
  if (r.status !== 'succeeded') throw new Error(`run ${r.seq}: ${r.status} ${r.stderr} ${r.error?.message ?? ''}`);
  return r;
};

/** Waits until the session's state says its workspace was saved after run `seq` (or why it was not). */
const savedAfter = (session: Session, seq: number): Promise<SessionState> =>
  eventually(
    () => session.state(),
    (s) => !!s.workspace && ('error' in s.workspace || s.workspace.seq >= seq),
    30_000,
  );

async function deletePod(session: Session): Promise<void> {
  await deleteSessionPod(kube, session.id, (await session.state()).pod!);
}

test('replay off: a new pod gets the files back from the store, not the variables', async () => {
  const session = await w.client.openSession({ replay: false });
  try {
    const wrote = ok(
      await session.run(
        'import hashlib, os\nx = 1\nos.makedirs("proj/out", exist_ok=True)\n' +
          'data = os.urandom(200_000)\nopen("proj/out/data.bin", "wb").write(data)\nhashlib.sha256(data).hexdigest()',
      ),
    );
    expect(await savedAfter(session, 1)).toMatchObject({ workspace: { seq: 1, bytes: expect.any(Number) } });
    await deletePod(session);
    const back = await session.run(
      'import hashlib, os\nprint(repr(hashlib.sha256(open("proj/out/data.bin", "rb").read()).hexdigest()))\nx',
    );
    expect(back.stdout).toBe(wrote.stdout);
    // A fresh interpreter: the variable is gone (the run says so), the files are back.
    expect(back.status).toBe('failed');
    expect(back.stderr).toMatch(/NameError: name 'x' is not defined/);
    expect(back.session.restored).toMatchObject({ runs: 0, workspace: { seq: 1, bytes: expect.any(Number) } });
  } finally {
    await session.close();
  }
  expect(await store().get(session.id)).toBeUndefined();
});

test('replay on: a snapshot after each run that changed the files or the state; a new pod gets the newest, nothing drawn again', async () => {
  const session = await w.client.openSession({});
  try {
    ok(await session.run('open("log.txt", "a").write("one\\n")\ncount = 1'));
    const drawn = ok(await session.run('import random\nr = repr(random.random())\nopen("r.txt", "w").write(r)\nr'));
    await savedAfter(session, 2);
    // A run that changes the state alone is a snapshot too; one that changes nothing is none.
    ok(await session.run('count += 1'));
    await savedAfter(session, 3);
    ok(await session.run('print(count)'));
    await new Promise((r) => setTimeout(r, 1500));
    expect((await session.state()).workspace).toMatchObject({ seq: 3 });
    await deletePod(session);
    const back = ok(await session.run('print(open("log.txt").read(), end="")\nprint(open("r.txt").read())\ncount'));
    expect(back.stdout).toBe(`one\n${drawn.stdout.trim().replace(/^'|'$/g, '')}\n2\n`);
    expect(back.session.restored).toMatchObject({ runs: 0, workspace: { seq: 3 }, state: { seq: 3 } });
  } finally {
    await session.close();
  }
  expect(await store().get(session.id)).toBeUndefined();
});

test('a workspace past the worker limit is not kept, and the state says why; the session goes on', async () => {
  const small = await startWorker({ DS_WARM_POOL_SIZE: '0', DS_WORKSPACE_MAX_BYTES: '4096' });
  try {
    const session = await small.client.openSession({});
    try {
      ok(await session.run('import os\nopen("big.bin", "wb").write(os.urandom(100_000))'));
      const s = await savedAfter(session, 1);
      expect(s.workspace).toEqual({ error: expect.stringMatching(/larger than .*DS_WORKSPACE_MAX_BYTES/) });
      expect(ok(await session.run('len(open("big.bin", "rb").read())')).stdout).toBe('100000\n');
    } finally {
      await session.close();
    }
  } finally {
    await small.stop();
  }
});

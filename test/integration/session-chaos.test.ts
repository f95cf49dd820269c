/**
 * A session through crashes: its worker (a real worker process) SIGKILLed while a run's pod is being opened, while
 * runs are in flight and between runs, and the apiserver killed and restarted under a run. Every run answers once,
 * with its own result: a run is never lost and never run twice (each run adds 1 to a counter the interpreter keeps,
 * so a run sent twice would show), and the session's close leaves nothing.
 * It takes servers away: `npm test` runs suites one at a time (--runInBand), so nothing else runs alongside it.
 */
import { SandboxClient, type Session, type SessionRunResult } from '../../client';
import { killComponent, stackUp } from '../../scripts/chaos/faults';
import { adminKube, eventually, killableWorker, sessionPods } from '../helpers/stack';

jest.setTimeout(10 * 60_000);
const kube = adminKube();

const STEP = 'import time\ntime.sleep(3)\ncount += 1\nprint(count)';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('worker SIGKILLs (opening, mid-run, between runs) and an apiserver restart: every run once, nothing left', async () => {
  const { taskQueue, config, supervisor: worker } = killableWorker('test-session-chaos');
  const { temporal, policy } = config;
  const client = await SandboxClient.connect({ temporal, policy, taskQueue, noWorkerSeconds: 0 });
  let session: Session | undefined;
  try {
    await eventually(
      () => client.pollers(),
      (n) => n > 0,
      120_000,
    );
    session = await client.openSession({ timeoutSeconds: 60 });
    const s = session;
    /** Sends a run, and while it is in flight (after `afterMs`) does `fault`. */
    const runWith = async (fault: () => Promise<void> | void, afterMs: number): Promise<SessionRunResult> => {
      const running = s.run(STEP);
      running.catch(() => undefined);
      await sleep(afterMs);
      await fault();
      return running;
    };
    const results: SessionRunResult[] = [];
    // The first run opens the pod: killed while it is being opened.
    results.push(await runWith(() => void worker.kill(), 0));
    // `count` is not defined yet: the program's own failure, a result (not a lost run).
    expect(results[0]).toMatchObject({ status: 'failed', exitCode: 1 });
    expect(results[0].stderr).toMatch(/NameError/);
    expect((await s.run('count = 0')).status).toBe('succeeded');
    for (let i = 0; i < 3; i++) results.push(await runWith(() => void worker.kill(), 1500));
    worker.kill(); // between runs
    await sleep(2000);
    results.push(await s.run(STEP));
    results.push(
      await runWith(async () => {
        await killComponent('kube-apiserver');
        stackUp();
      }, 1500),
    );
    const counts = results.slice(1).map((r) => r.stdout);
    expect(counts).toEqual(['1\n', '2\n', '3\n', '4\n', '5\n']);
    for (const r of results.slice(1)) expect(r).toMatchObject({ status: 'succeeded', exitCode: 0 });
    // The interpreter agrees: five increments, not more.
    expect((await s.run('count')).stdout).toBe('5\n');
    expect(worker.kills).toBe(5);
  } finally {
    if (session) {
      const closed = await session.close();
      expect(closed.state).toBe('closed');
      expect(await sessionPods(kube, session.id)).toEqual([]);
    }
    await worker.stop();
    await client.close();
  }
});

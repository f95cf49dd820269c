/**
 * Records real workflow histories from the stack into test/replay/histories/*.json: one per way an execution can
 * go, each started the way clients start them (executeCode: update-with-start). test/replay/replay.test.ts replays
 * them, and the older ones kept in histories/v1/ (recorded before the fast path), against the current workflow code,
 * so a change that would break running executions fails the tests. Record again only with a versioned change to
 * the workflow (a patch or a new workflow type), and keep the old recordings in a folder of their own.
 *   npm run record:histories                       (needs the stack: npm run stack:up)
 *   npm run record:histories -- --only NAME        one of them (e.g. a new one)
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { ExecutionInput } from '../client';
import { PROJECT_ROOT } from '../cli/local-stack';
import {
  adminKube,
  poolHasReady,
  startWorker,
  SANDBOX_NAMESPACE,
  whenRunning,
  type TestWorker,
} from '../test/helpers/stack';
import { resourceNames } from '../core/names';
import { poolWorkflowId } from '../core/pool';
import { DEFAULT_LANGUAGE } from '../core/languages';
import { sessionSelector } from '../core/session';

const OUT = path.join(PROJECT_ROOT, 'test', 'replay', 'histories');
const ONLY = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;
const wanted = (name: string) => !ONLY || ONLY === name;

function save(name: string, history: Parameters<typeof historyToJSON>[0], outcome: string): void {
  writeFileSync(path.join(OUT, `${name}.json`), `${historyToJSON(history)}\n`);
  console.log(`${name}: ${outcome}, ${history.events?.length} events`);
}

async function record(
  w: TestWorker,
  name: string,
  input: ExecutionInput,
  during?: (id: string) => Promise<void>,
): Promise<void> {
  if (!wanted(name)) return;
  const executionId = `replay-${name}-${Date.now()}`;
  const answered = w.client.executeCode(input, { executionId });
  answered.catch(() => undefined);
  await during?.(executionId);
  await answered.catch(() => undefined);
  const handle = w.client.handle(executionId);
  const outcome = await handle.result().then(
    (r) => r.status,
    (e: unknown) => `workflow failed: ${(e as Error).message}`,
  );
  save(name, await handle.fetchHistory(), outcome);
}

/** An execution no worker took within the queue timeout: the first worker to see it ends it, running nothing. */
async function recordQueueTimeout(): Promise<void> {
  if (!wanted('queue-timeout')) return;
  const taskQueue = `replay-queue-${Date.now()}`;
  // A worker of another task queue only lends its client: nobody polls `taskQueue` until `late` starts.
  const other = await startWorker({ DS_TASK_QUEUE: `${taskQueue}-other` });
  const late = await (async () => {
    const handle = await other.client.temporal.workflow.start('executeCode', {
      taskQueue,
      workflowId: `replay-queue-timeout-${Date.now()}`,
      args: [{ code: 'print(1)' }],
    });
    await new Promise((r) => setTimeout(r, 3000));
    return { handle, worker: await startWorker({ DS_TASK_QUEUE: taskQueue, DS_QUEUE_TIMEOUT_SECONDS: '2' }) };
  })();
  try {
    const r = (await late.handle.result()) as { status: string; error?: { reason: string } };
    save('queue-timeout', await late.handle.fetchHistory(), `${r.status} ${r.error?.reason}`);
  } finally {
    await late.worker.stop();
    await other.stop();
  }
}

/**
 * A session: runs (one writes a file, one draws a random value, one past its limit, one that ends its interpreter, so
 * the launcher restarts it in its pod from the last checkpoint), idle, a run resumed on a new pod from its newest
 * snapshot (files and state), a fork of an earlier run, then close (its snapshots deleted). Recorded as
 * `session-snapshots` (since sessions keep snapshots and fork); the fork's own history as `session-fork`.
 * `session.json`, `session-bounded.json`, `session-capped.json` and `session-workspace.json` are the ones recorded
 * before (before sessions bounded their history; before the cap; before the workspace store; before snapshots).
 */
const SESSION_NAME = 'session-snapshots';

async function recordSession(): Promise<void> {
  if (!wanted(SESSION_NAME)) return;
  const w = await startWorker({ DS_WARM_POOL_SIZE: '0' });
  if (!w.config.workspaceStore) throw new Error('the worker has no workspace store: is the local stack up?');
  try {
    const session = await w.client.openSession({ sessionId: `replay-session-${Date.now()}`, idleTimeoutSeconds: 2 });
    await session.run('x = 41\nopen("kept.txt", "w").write("kept")');
    const drawn = await session.run('import random\nr = random.random()\nr');
    await session.run('import time\nwhile True:\n    time.sleep(0.1)', { timeoutSeconds: 1 });
    const ended = await session.run('import os\nos._exit(3)');
    if (!ended.session) throw new Error('the run that ended its interpreter has no session note');
    await session.run('x + 1');
    const pods = () =>
      kube.core.listNamespacedPod({ namespace: SANDBOX_NAMESPACE, labelSelector: sessionSelector(session.id) });
    while ((await pods()).items.length > 0) await new Promise((r) => setTimeout(r, 500));
    const resumed = await session.run('print(x, open("kept.txt").read())\nr');
    const restored = resumed.session.restored;
    if (!restored?.state || 'error' in restored.state || !restored.workspace || 'error' in restored.workspace)
      throw new Error(`the resumed run has no restored snapshot: ${JSON.stringify(resumed.session)}`);
    if (!resumed.stdout.endsWith(drawn.stdout)) throw new Error(`the value drawn came back as ${resumed.stdout}`);
    const [fork] = await session.fork({ atRun: 2 });
    const forked = await fork.run('x, r');
    if (forked.status !== 'succeeded') throw new Error(`the fork's run: ${forked.status} ${forked.stderr}`);
    await fork.close();
    await session.close();
    save(SESSION_NAME, await w.client.temporal.workflow.getHandle(session.id).fetchHistory(), 'closed');
    save('session-fork', await w.client.temporal.workflow.getHandle(fork.id).fetchHistory(), 'closed');
  } finally {
    await w.stop();
  }
}

const kube = adminKube();

async function run(): Promise<void> {
  await recordQueueTimeout();
  if (ONLY === 'queue-timeout') return;
  await recordSession();
  if (ONLY === SESSION_NAME) return;
  const w = await startWorker();
  const broken = await startWorker({ DS_IMAGE_PYTHON: 'localhost/durable-sandbox/no-such-image:1' });
  try {
    await record(w, 'succeeded', { code: 'print("hello")' });
    await record(w, 'failed', { code: 'import sys\nprint("out")\nprint("err", file=sys.stderr)\nsys.exit(3)' });
    await record(w, 'timed-out', { code: 'import time\ntime.sleep(600)', timeoutSeconds: 2 });
    await record(w, 'oom-killed', {
      code: 'x = []\nwhile True:\n    x.append(bytearray(16 << 20))',
      limits: { memory: '64Mi' },
    });
    await record(w, 'cancelled', { code: 'import time\nprint("started", flush=True)\ntime.sleep(600)' }, async (id) => {
      await whenRunning(kube, id);
      await w.client.cancelExecution(id);
    });
    await record(w, 'infra-retry', { code: 'import time\ntime.sleep(4)\nprint("done")' }, async (id) => {
      // Lose the first attempt's pod: the execution retries with fresh resources and succeeds.
      await whenRunning(kube, id);
      const pods = await kube.core.listNamespacedPod({
        namespace: SANDBOX_NAMESPACE,
        labelSelector: resourceNames(id, 1).attemptSelector,
      });
      await kube.core.deleteNamespacedPod({ name: pods.items[0].metadata!.name!, namespace: SANDBOX_NAMESPACE });
    });
    await record(broken, 'image-missing', { code: 'print(1)' });
    if (wanted('invalid-input'))
      await record(w, 'invalid-input', { code: 'print(1)', timeoutSeconds: 10 ** 6 }).catch(async () => {
        // The client refuses this input itself; start the workflow directly to record the workflow's own refusal.
        const executionId = `replay-invalid-input-${Date.now()}`;
        const handle = await w.client.temporal.workflow.start('executeCode', {
          taskQueue: w.config.temporal.taskQueue,
          workflowId: executionId,
          args: [{ code: 'print(1)', timeoutSeconds: 10 ** 6 }],
        });
        await handle.result().catch(() => undefined);
        writeFileSync(path.join(OUT, 'invalid-input.json'), `${historyToJSON(await handle.fetchHistory())}\n`);
        console.log('invalid-input: workflow failed as expected');
      });
    // The warm path: an execution in a pool pod, and the pool's own workflow (recorded once it has emptied itself).
    if (ONLY && ONLY !== 'warm-succeeded') return;
    const warm = await startWorker({ DS_WARM_POOL_SIZE: '1' });
    try {
      await poolHasReady(warm, DEFAULT_LANGUAGE);
      await record(warm, 'warm-succeeded', { code: 'print("hello")' });
    } finally {
      await warm.stop();
    }
    const pool = w.client.temporal.workflow.getHandle(poolWorkflowId(warm.config.temporal.taskQueue, DEFAULT_LANGUAGE));
    const history = await pool.fetchHistory();
    writeFileSync(path.join(OUT, 'warm-pool.json'), `${historyToJSON(history)}\n`);
    console.log(`warm-pool: ${history.events?.length} events`);
  } finally {
    await w.stop();
    await broken.stop();
  }
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});

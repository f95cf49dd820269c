/**
 * Replays every recorded history (scripts/record-histories.ts records them from the real stack) against the
 * current workflow code: the fast path's (histories/) and those recorded before it (histories/v1/, which must keep
 * replaying while such executions may still be running). A change that would make running executions
 * non-deterministic fails here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { DefaultLogger, Runtime, Worker, type ReplayWorkerOptions } from '@temporalio/worker';
import { startTracing, tracingWorkerOptions } from '../../worker/tracing';

jest.setTimeout(120_000);
const DIR = path.join(__dirname, 'histories');
const WAYS = [
  'cancelled',
  'failed',
  'image-missing',
  'infra-retry',
  'invalid-input',
  'oom-killed',
  'succeeded',
  'timed-out',
];
/** The warm path (a pool pod, and the pool's own workflow) exists since the warm pool. */
const WARM = ['warm-pool', 'warm-succeeded'];
/** An execution no worker started in time (since the queue timeout). */
const QUEUE = ['queue-timeout'];
/**
 * A session (since sessions): runs, a run past its limit, idle release, a run resumed by replay, close; recorded
 * before sessions bound their history and replay list (`session`), since (`session-bounded`), and since the cap on
 * open sessions (`session-capped`), and since sessions keep their workspace in the worker's store
 * (`session-workspace`: a file saved after its run, restored on the resumed pod, deleted at close), and since
 * snapshots and fork (`session-snapshots`: state and files as of each run, an interpreter restarted in its pod, a
 * resume from the newest snapshot, a fork of an earlier run; `session-fork`: the fork's own history).
 */
const SESSION = [
  'session',
  'session-bounded',
  'session-capped',
  'session-workspace',
  'session-snapshots',
  'session-fork',
];
const recorded = (dir: string) =>
  readdirSync(path.join(DIR, dir))
    .filter((f) => f.endsWith('.json'))
    .sort();
const generations = {
  current: { dir: '.', ways: [...WAYS, ...WARM, ...QUEUE, ...SESSION] },
  'before the fast path': { dir: 'v1', ways: WAYS },
};

test.each(Object.entries(generations))(
  'there is a recorded history for every way an execution ends (%s)',
  (_name, g) => {
    expect(recorded(g.dir)).toEqual(g.ways.map((n) => `${n}.json`).sort());
  },
);

const histories = () =>
  Object.values(generations).flatMap(({ dir }) =>
    recorded(dir).map((f) => {
      const json = JSON.parse(readFileSync(path.join(DIR, dir, f), 'utf8'));
      // Replayed under the id it ran with where the history says it (a child's id is made from its parent's).
      const ran: string | undefined = json.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowId;
      return {
        workflowId: ran ?? `${dir}/${path.basename(f, '.json')}`,
        file: `${dir}/${f}`,
        history: historyFromJSON(json),
      };
    }),
  );

async function replayAll(options: Omit<ReplayWorkerOptions, 'workflowsPath'> = {}): Promise<string[]> {
  const failures: string[] = [];
  let replayed = 0;
  const all = histories();
  const fileOf = new Map(all.map((h) => [h.workflowId, h.file]));
  expect(fileOf.size).toBe(all.length);
  for await (const r of Worker.runReplayHistories(
    { workflowsPath: require.resolve('../../workflows'), ...options },
    all.map(({ workflowId, history }) => ({ workflowId, history })),
  )) {
    replayed++;
    if (r.error) failures.push(`${fileOf.get(r.workflowId) ?? r.workflowId}: ${r.error.message}`);
  }
  expect(replayed).toBe(2 * WAYS.length + WARM.length + QUEUE.length + SESSION.length);
  return failures;
}

beforeAll(() => Runtime.install({ logger: new DefaultLogger('ERROR') }));

test('every recorded history replays against the current workflow code', async () => {
  expect(await replayAll()).toEqual([]);
});

test('they replay with tracing on too (the OpenTelemetry workflow interceptors), exporting nothing while replaying', async () => {
  const exporter = new InMemorySpanExporter();
  const tracing = startTracing(new SimpleSpanProcessor(exporter), 'replay-test');
  try {
    expect(await replayAll(tracingWorkerOptions(tracing))).toEqual([]);
    expect(exporter.getFinishedSpans()).toEqual([]);
  } finally {
    await tracing.shutdown();
  }
});

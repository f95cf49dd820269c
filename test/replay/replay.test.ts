/**
 * Replays every recorded history (scripts/record-histories.ts records them from the real stack) against the
 * current workflow code. A change that would make running executions non-deterministic fails here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';

jest.setTimeout(120_000);
const DIR = path.join(__dirname, 'histories');
const files = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

test('there is a recorded history for every way an execution ends', () => {
  expect(files).toEqual(
    ['cancelled', 'failed', 'image-missing', 'infra-retry', 'invalid-input', 'oom-killed', 'succeeded', 'timed-out'].map(
      (n) => `${n}.json`,
    ),
  );
});

test('every recorded history replays against the current workflow code', async () => {
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const histories = files.map((f) => ({
    workflowId: path.basename(f, '.json'),
    history: historyFromJSON(JSON.parse(readFileSync(path.join(DIR, f), 'utf8'))),
  }));
  const failures: string[] = [];
  let replayed = 0;
  for await (const r of Worker.runReplayHistories({ workflowsPath: require.resolve('../../workflows') }, histories)) {
    replayed++;
    if (r.error) failures.push(`${r.workflowId}: ${r.error.message}`);
  }
  expect(failures).toEqual([]);
  expect(replayed).toBe(files.length);
});

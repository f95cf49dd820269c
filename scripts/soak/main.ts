/**
 * npm run soak -- --minutes 30 [--concurrency 4] [--kill-every 90s] [--temporal-every 8m] [--apiserver-every 7m]
 *   [--pod-delete-every 60s] [--seed 1]
 * A mixed load with faults at random on the local stack for N minutes; prints its table (markdown) and exits 1 when
 * anything was lost, wrong, run twice, left behind or left open.
 */
import { parseArgs } from 'node:util';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DEFAULT_SOAK, formatSoak, runSoak, soakFailed } from './run';
import { parseDuration } from '../seeded';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string' },
      concurrency: { type: 'string' },
      'kill-every': { type: 'string' },
      'temporal-every': { type: 'string' },
      'apiserver-every': { type: 'string' },
      'pod-delete-every': { type: 'string' },
      seed: { type: 'string' },
    },
  });
  const minutes = Number(values.minutes ?? DEFAULT_SOAK.minutes);
  if (!(minutes > 0)) throw new Error(`--minutes must be a positive number, not ${values.minutes}`);
  const d = (v: string | undefined, fallback: number) => (v === undefined ? fallback : parseDuration(v));
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const report = await runSoak({
    ...DEFAULT_SOAK,
    minutes,
    concurrency: Number(values.concurrency ?? DEFAULT_SOAK.concurrency),
    killEveryMs: d(values['kill-every'], DEFAULT_SOAK.killEveryMs),
    temporalRestartEveryMs: d(values['temporal-every'], DEFAULT_SOAK.temporalRestartEveryMs),
    apiserverOutageEveryMs: d(values['apiserver-every'], DEFAULT_SOAK.apiserverOutageEveryMs),
    podDeleteEveryMs: d(values['pod-delete-every'], DEFAULT_SOAK.podDeleteEveryMs),
    seed: Number(values.seed ?? DEFAULT_SOAK.seed),
  });
  console.log(formatSoak(report));
  process.exit(soakFailed(report) ? 1 : 0);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(2);
});

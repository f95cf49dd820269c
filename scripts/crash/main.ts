/**
 * npm run crash-points -- [--only "run step"] [--pairs N|all] [--concurrency N] [--seed N]
 * Kills every durable step at each of its requests to the Kubernetes API (and at pairs of them across two tries) on
 * the local stack, checks what must hold after the retry, prints a table and exits 1 on any failure.
 */
import { parseArgs } from 'node:util';
import { applyStackEnv } from '../../cli/local-stack';
import { DEFAULT_CRASH, formatCrashReport, runCrashPoints } from './run';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string', multiple: true },
      pairs: { type: 'string' },
      concurrency: { type: 'string' },
      seed: { type: 'string' },
    },
  });
  applyStackEnv();
  const reports = await runCrashPoints({
    ...DEFAULT_CRASH,
    only: values.only ?? [],
    pairsPerCase: values.pairs === 'all' ? Infinity : Number(values.pairs ?? DEFAULT_CRASH.pairsPerCase),
    concurrency: Number(values.concurrency ?? DEFAULT_CRASH.concurrency),
    seed: Number(values.seed ?? DEFAULT_CRASH.seed),
  });
  console.log(formatCrashReport(reports));
  process.exit(reports.some((r) => r.failures.length > 0) ? 1 : 0);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(2);
});

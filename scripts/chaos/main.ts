/**
 * npm run chaos -- --executions 200 --concurrency 8 --kill-every 3s --temporal-restarts 2 --apiserver-outages 2
 * Runs the chaos harness on the local stack, prints the summary and exits 1 on any loss, wrong result,
 * duplicate or leak.
 */
import { parseArgs } from 'node:util';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DEFAULT_CHAOS, failed, formatReport, runChaos } from './run';
import { parseDuration } from '../seeded';

async function run(): Promise<void> {
  const { values } = parseArgs({
    options: {
      executions: { type: 'string' },
      concurrency: { type: 'string' },
      'kill-every': { type: 'string' },
      'no-targeted-kills': { type: 'boolean', default: false },
      'temporal-restarts': { type: 'string' },
      'apiserver-outages': { type: 'string' },
      'apiserver-down': { type: 'string' },
      'pod-deletions': { type: 'string' },
      'warm-pool': { type: 'string' },
      seed: { type: 'string' },
    },
  });
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v));
  const started = Date.now();
  const report = await runChaos({
    ...DEFAULT_CHAOS,
    executions: num(values.executions, DEFAULT_CHAOS.executions),
    concurrency: num(values.concurrency, DEFAULT_CHAOS.concurrency),
    killEveryMs: values['kill-every'] ? parseDuration(values['kill-every']) : DEFAULT_CHAOS.killEveryMs,
    targetedKills: !values['no-targeted-kills'],
    temporalRestarts: num(values['temporal-restarts'], DEFAULT_CHAOS.temporalRestarts),
    apiserverOutages: num(values['apiserver-outages'], DEFAULT_CHAOS.apiserverOutages),
    apiserverDownMs: values['apiserver-down'] ? parseDuration(values['apiserver-down']) : DEFAULT_CHAOS.apiserverDownMs,
    podDeletions: num(values['pod-deletions'], DEFAULT_CHAOS.podDeletions),
    warmPool: num(values['warm-pool'], DEFAULT_CHAOS.warmPool),
    seed: num(values.seed, DEFAULT_CHAOS.seed),
    log: (line) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}`),
  });
  console.log(`\nchaos run finished in ${((Date.now() - started) / 1000).toFixed(0)} s\n${formatReport(report)}`);
  if (failed(report)) process.exitCode = 1;
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});

/**
 * A bounded chaos pass on every CI run (the harness is scripts/chaos; `npm run chaos` runs longer ones): worker
 * SIGKILLs at random moments and at chosen points, one Temporal server restart, one apiserver outage and sandbox
 * pods deleted from outside. No result may be lost or wrong, no Job or run duplicated, nothing left behind.
 * It takes servers away: `npm test` runs suites one at a time (--runInBand), so nothing else runs alongside it.
 */
import { formatReport, runChaos, DEFAULT_CHAOS } from '../../scripts/chaos/run';
import { localSides } from '../../cli/local-stack';

jest.setTimeout(15 * 60_000);

test('20 executions through worker kills, a Temporal restart and an apiserver outage: 0 lost, 0 duplicated, 0 leaked', async () => {
  const sides = localSides();
  if (!sides.kube || !sides.temporal)
    throw new Error('the chaos pass kills local stack components: it needs the local stack');
  const lines: string[] = [];
  const report = await runChaos({
    ...DEFAULT_CHAOS,
    executions: 20,
    concurrency: 5,
    killEveryMs: 10_000,
    temporalRestarts: 1,
    apiserverOutages: 1,
    apiserverDownMs: 5000,
    podDeletions: 2,
    log: (l) => lines.push(l),
  });
  const summary = formatReport(report);
  process.stdout.write(`chaos pass:\n${summary}\n`);
  // Two pod deletions cannot exhaust three attempts, so every result must equal the fault-free one.
  expect({
    lost: report.lost,
    wrong: report.wrong,
    typedDifferent: report.typedDifferent,
    duplicates: report.duplicates,
    leaks: report.leaks,
  }).toEqual({ lost: 0, wrong: 0, typedDifferent: 0, duplicates: 0, leaks: [] });
  expect(report.delivered).toBe(20);
  expect(report.workerKills).toBeGreaterThan(0);
  expect(report.temporalRestarts).toBe(1);
  expect(report.apiserverOutages).toBe(1);
});

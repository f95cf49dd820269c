/**
 * The chaos pass with the warm pool on: worker SIGKILLs at random and right when a pool pod is claimed (its task on
 * its way or running) and when the pool replenishes, and ready pool pods deleted from outside. No result may be lost
 * or wrong, no pool pod may run two programs, nothing may be left, and the pool must be back at its size.
 */
import { formatReport, runChaos, DEFAULT_CHAOS } from '../../scripts/chaos/run';
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { localSides, PROJECT_ROOT } from '../../cli/local-stack';

jest.setTimeout(15 * 60_000);

test('16 executions with a pool of 3 through worker kills and pool pod deletions: 0 lost, 0 shared, 0 leaked', async () => {
  const sides = localSides();
  if (!sides.kube || !sides.temporal)
    throw new Error('the chaos pass kills local stack components: it needs the local stack');
  const report = await runChaos({
    ...DEFAULT_CHAOS,
    executions: 16,
    concurrency: 4,
    killEveryMs: 8000,
    temporalRestarts: 0,
    apiserverOutages: 0,
    podDeletions: 3,
    warmPool: 3,
    // The harness's own account (kills, deletions, the pool's refill), for when this fails.
    log: (line: string) =>
      appendFileSync(
        path.join(PROJECT_ROOT, '.stack', 'logs', 'chaos-warm-test.log'),
        `${new Date().toISOString()} ${line}\n`,
      ),
  });
  process.stdout.write(`chaos pass (warm pool):\n${formatReport(report)}\n`);
  expect({
    lost: report.lost,
    wrong: report.wrong,
    typedDifferent: report.typedDifferent,
    duplicates: report.duplicates,
    sharedPods: report.sharedPods,
    leaks: report.leaks,
    poolBackAtSize: report.poolBackAtSize,
  }).toEqual({ lost: 0, wrong: 0, typedDifferent: 0, duplicates: 0, sharedPods: [], leaks: [], poolBackAtSize: true });
  expect(report.delivered).toBe(16);
  expect(report.warm).toBeGreaterThan(0);
  // The duplicate check counts pool pods by what their launchers accepted: it saw every warm run.
  expect(report.poolPodsThatRan).toBeGreaterThanOrEqual(report.warm);
  expect(report.workerKills).toBeGreaterThan(0);
});

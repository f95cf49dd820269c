/**
 * The crash-point harness's fast part (scripts/crash; `npm run crash-points -- --pairs all` runs every pair): each
 * durable step killed at each of its requests to the Kubernetes API and at each heartbeat, before and after it, then
 * retried; and a sample of pairs (a death in the first try, another in the second). After each: exactly one program
 * run (one answer for a session run), the step's right result, and nothing left once cleanup ran.
 */
import { applyStackEnv } from '../../cli/local-stack';
import { DEFAULT_CRASH, formatCrashReport, runCrashPoints } from '../../scripts/crash/run';
import { STEP_CASES } from '../../scripts/crash/steps';

jest.setTimeout(20 * 60_000);
applyStackEnv();

test('every step, killed at every point and at sampled pairs of points, retries to the one right result and leaves nothing', async () => {
  const reports = await runCrashPoints({ ...DEFAULT_CRASH, log: (l) => process.stdout.write(`${l}\n`) });
  process.stdout.write(`crash points:\n${formatCrashReport(reports)}\n`);
  expect(reports.map((r) => r.name)).toEqual(STEP_CASES.map((c) => c.name));
  for (const r of reports) {
    // A step with no point reached would be a harness that kills nothing.
    expect({ step: r.name, reached: r.reached > 0 && r.points.length > 0 }).toEqual({ step: r.name, reached: true });
    expect({ step: r.name, pairs: r.pairs }).toEqual({
      step: r.name,
      pairs: Math.min(DEFAULT_CRASH.pairsPerCase, r.pairUniverse),
    });
  }
  expect(reports.flatMap((r) => r.failures.map((f) => `${r.name}: ${f.crashes}: ${f.wrong.join('; ')}`))).toEqual([]);
});

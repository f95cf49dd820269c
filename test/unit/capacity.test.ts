import { sustainedVerdict } from '../../scripts/bench/capacity';

/** n runs offered at `rate`/s, each taking latency(i) ms. */
const runs = (n: number, rate: number, latency: (i: number) => number, ok = (_i: number) => true) =>
  Array.from({ length: n }, (_, i) => ({ startedAt: (i * 1000) / rate, ms: latency(i), ok: ok(i), error: 'boom' }));

test('a rate is sustained when latency stays flat and completions keep up', () => {
  const v = sustainedVerdict(
    runs(20, 1, () => 2000),
    1,
  );
  expect(v).toMatchObject({ sustained: true, first: 2000, second: 2000 });
  expect(v.completedPerSecond).toBeCloseTo(1, 5);
});

test('latency that rose over the window is not sustained, even while completions keep up', () => {
  const v = sustainedVerdict(
    runs(40, 1, (i) => (i < 20 ? 2000 : 6000)),
    1,
  );
  expect(v.completedPerSecond).toBeGreaterThan(0.85);
  expect(v.sustained).toBe(false);
  expect(v.why).toMatch(/latency grew/);
});

test('completions slower than offered are not sustained, even when each half looks alike', () => {
  // Offered 2/s, served one per second: latency climbs, and completions run at half the rate.
  const v = sustainedVerdict(
    runs(20, 2, (i) => 2000 + i * 500),
    2,
  );
  expect(v.sustained).toBe(false);
  expect(v.completedPerSecond).toBeCloseTo(1, 5);
  expect(v.why).toMatch(/completed 1.00\/s/);
});

test('any failed execution makes the rate not sustained, naming the failure', () => {
  const v = sustainedVerdict(
    runs(
      10,
      1,
      () => 2000,
      (i) => i !== 3,
    ),
    1,
  );
  expect(v).toMatchObject({ sustained: false, why: '1 failed: boom' });
});

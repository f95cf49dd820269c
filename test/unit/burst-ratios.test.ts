import { burstRatios, type BurstSummary } from '../../scripts/bench/report';
import type { Side } from '../../scripts/bench/types';

/** A burst summary with only what the ratios read. */
const burst = (size: number, round: number, side: Side, p50: number) =>
  ({ size, round, side, latency: { p50 } }) as unknown as BurstSummary;

test("each round's ratios compare that round's bursts; the medians are over the rounds", () => {
  const s = [
    ...[
      [4000, 4400, 1600],
      [6000, 6000, 3000],
      [5000, 6500, 2000],
    ].flatMap(([fast, ours, warm], round) => [
      burst(10, round, 'floor', 9000),
      burst(10, round, 'fast', fast),
      burst(10, round, 'ours', ours),
      burst(10, round, 'warm', warm),
    ]),
    burst(1, 0, 'fast', 2000),
    burst(1, 0, 'ours', 2200),
  ];
  const [ten, one] = burstRatios(s);
  expect(ten.size).toBe(10);
  expect(ten.rounds.map((r) => r.ours)).toEqual([1.1, 1, 1.3]);
  expect(ten.rounds.map((r) => r.warm)).toEqual([0.4, 0.5, 0.4]);
  // Not the ratio of the pooled p50s (5833 / 5000 = 1.17): the median of the rounds' own ratios.
  expect(ten.ours).toBeCloseTo(1.1, 5);
  expect(ten.warm).toBeCloseTo(0.4, 5);
  // A round without a warm burst has no warm ratio, and does not make the median NaN.
  expect(one).toMatchObject({ size: 1, ours: 1.1 });
  expect(one.warm).toBeNaN();
});

test('a round whose fast burst is missing gives no ratio', () => {
  expect(burstRatios([burst(10, 0, 'ours', 5000)])).toEqual([]);
});

/**
 * Metrics on the real stack: a worker with DS_METRICS_ADDRESS serves Prometheus metrics; after a few executions the
 * project's counters and histograms add up to what ran, next to the SDK's own metrics.
 */
import { METRICS } from '../../core/metrics';
import { freePort } from '../../dev/free-port';
import { eventually, startWorker, uniqueId, type TestWorker } from '../helpers/stack';

jest.setTimeout(180_000);
let w: TestWorker;
let address: string;

beforeAll(async () => {
  address = `127.0.0.1:${await freePort()}`;
  process.env.DS_METRICS_ADDRESS = address;
  w = await startWorker();
});
afterAll(async () => {
  await w?.stop();
  delete process.env.DS_METRICS_ADDRESS;
});

/** `name{labels} value` lines of the exposition format, as (name, labels, value). */
function samples(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  return text
    .split('\n')
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(l)!;
      const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      return { name: m[1], labels, value: Number(m[3]) };
    });
}

function sum(all: ReturnType<typeof samples>, name: string, labels: Record<string, string> = {}): number {
  return all
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

test('executions by status, attempts and phase histograms add up to what ran; the SDK metrics are there too', async () => {
  const runs = [
    { code: 'print(1)', status: 'succeeded' },
    { code: 'print(2)', status: 'succeeded' },
    { code: 'import sys\nsys.exit(3)', status: 'failed' },
  ];
  for (const r of runs) {
    const result = await w.client.executeCode({ code: r.code }, { executionId: uniqueId('metrics') });
    expect(result.status).toBe(r.status);
    // The workflow records its metrics at its end, after cleanup.
    await w.client.handle(result.executionId).result();
  }
  const scrape = async () => samples(await (await fetch(`http://${address}/metrics`)).text());
  const all = await eventually(scrape, (s) => sum(s, `${METRICS.executions}_total`) >= runs.length, 30_000);
  expect(sum(all, `${METRICS.executions}_total`, { status: 'succeeded', language: 'python', sandbox: 'cold' })).toBe(2);
  expect(sum(all, `${METRICS.executions}_total`, { status: 'failed', language: 'python', sandbox: 'cold' })).toBe(1);
  expect(sum(all, `${METRICS.attempts}_total`)).toBe(3);
  for (const phase of ['acquire', 'start', 'run', 'collect', 'cleanup']) {
    expect(sum(all, `${METRICS.phaseSeconds}_count`, { phase })).toBe(3);
  }
  // The run of print(1) takes well under a second; the sums are in seconds.
  expect(sum(all, `${METRICS.phaseSeconds}_sum`, { phase: 'run' })).toBeLessThan(10);
  // The SDK's own, from the same endpoint.
  expect(all.some((s) => s.name.startsWith('temporal_') && s.name.includes('activity'))).toBe(true);
});

/**
 * Output files on the real stack: what a program leaves under /sandbox/out comes back with its result, on cold and on
 * warm sandboxes, with the data stack the image carries (numpy, pandas, matplotlib).
 */
import type { ExecutionResult } from '../../client';
import {
  leftoversAfterCompletion,
  adminKube,
  NOTHING_LEFT,
  poolHasReady,
  startWorker,
  type TestWorker,
} from '../helpers/stack';

jest.setTimeout(240_000);
const kube = adminKube();

const PLOT = `
import numpy as np, pandas as pd
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
df = pd.DataFrame({"x": np.arange(10), "y": np.arange(10) ** 2})
df.to_csv("/sandbox/out/data.csv", index=False)
fig = plt.figure(figsize=(4, 3), dpi=100)
plt.plot(df.x, df.y)
fig.savefig("/sandbox/out/plot.png")
print("saved")
`;

/** Width and height from a PNG's IHDR chunk, after checking its signature. */
function pngSize(bytes: Buffer): { width: number; height: number } {
  expect(bytes.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  expect(bytes.subarray(12, 16).toString('ascii')).toBe('IHDR');
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

function checkPlot(r: ExecutionResult): void {
  expect(r).toMatchObject({ status: 'succeeded', stdout: 'saved\n', stderr: '' });
  const byName = Object.fromEntries(r.outputFiles.map((f) => [f.name, f]));
  expect(Object.keys(byName).sort()).toEqual(['data.csv', 'plot.png']);
  expect(byName['data.csv']).toMatchObject({ mimeType: 'text/csv', encoding: 'utf8', truncated: false });
  expect(byName['data.csv'].content.split('\n')[0]).toBe('x,y');
  expect(byName['data.csv'].content).toContain('9,81');
  const png = byName['plot.png'];
  expect(png).toMatchObject({ mimeType: 'image/png', encoding: 'base64', truncated: false });
  const bytes = Buffer.from(png.content, 'base64');
  expect(bytes.length).toBe(png.sizeBytes);
  expect(pngSize(bytes)).toEqual({ width: 400, height: 300 });
}

describe('cold', () => {
  let w: TestWorker;
  beforeAll(async () => {
    w = await startWorker();
  });
  afterAll(async () => w?.stop());

  test('a matplotlib plot and a pandas CSV come back, the PNG 400x300 as drawn', async () => {
    const r = await w.client.executeCode({ code: PLOT, timeoutSeconds: 120 });
    expect(r.sandbox).toBe('cold');
    checkPlot(r);
    expect(await leftoversAfterCompletion(kube, w.client, r.executionId)).toEqual(NOTHING_LEFT);
  });

  test('the caps hold: a file past the per-file cap is cut and flagged, files past the count are not returned', async () => {
    const code = `
import os
open("/sandbox/out/big.bin", "wb").write(os.urandom(${2 * 1024 * 1024}))
for i in range(30):
    open("/sandbox/out/f%02d.txt" % i, "w").write("x")
os.symlink("/etc/passwd", "/sandbox/out/passwd")
`;
    const r = await w.client.executeCode({ code, timeoutSeconds: 60 });
    expect(r.status).toBe('succeeded');
    const policy = w.config.policy;
    expect(r.outputFiles.length).toBe(policy.outputFilesMaxCount);
    expect(r.outputFiles[0]).toMatchObject({
      name: 'big.bin',
      sizeBytes: 2 * 1024 * 1024,
      encoding: 'base64',
      truncated: true,
    });
    expect(Buffer.from(r.outputFiles[0].content, 'base64').length).toBe(policy.outputFileCapBytes);
    expect(r.outputFiles.map((f) => f.name)).not.toContain('passwd');
    // The result as a whole stays far below Temporal's 2 MB payload limit.
    expect(Buffer.byteLength(JSON.stringify(r))).toBeLessThan(1_500_000);
  });
});

describe('warm', () => {
  let w: TestWorker;
  beforeAll(async () => {
    w = await startWorker({ DS_WARM_POOL_SIZE: '1' });
  });
  afterAll(async () => w?.stop());

  test('the same plot from a warm pool pod', async () => {
    await poolHasReady(w, 'python');
    const r = await w.client.executeCode({ code: PLOT, timeoutSeconds: 120 });
    expect(r.sandbox).toBe('warm');
    checkPlot(r);
  });
});

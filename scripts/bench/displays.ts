/**
 * Display data and the Node.js languages in the bench. What display capture costs a session's `print(1)`: a session
 * on a worker with displays on (the default) against one on a worker with them off (DS_DISPLAYS_MAX_COUNT=0: no
 * display pipe, no hook), interleaved. What a run that shows one 100 KB PNG takes, in the session and one-shot,
 * against the same run printing one line. And what TypeScript's type check adds to a one-shot run: the same program
 * as JavaScript and as TypeScript, cold, interleaved.
 */
import type { ExecutionInput, ExecutionResult, Session } from '../../client';
import { startBenchWorker, type BenchWorker } from './ours';
import { fmt, median, summarize, table, type Summary } from './stats';

/** A PNG of about 100 KB: the signature, then bytes that do not compress (a figure's worth of data). */
const PNG_100KB = `
import os
class Png:
    def _repr_png_(self):
        return b"\\x89PNG\\r\\n\\x1a\\n" + os.urandom(100 * 1024 - 8)
    def __repr__(self):
        return "<a 100 KB PNG>"
display(Png())
`;
const PRINT = 'print(1)';

export interface DisplaysBenchDeps {
  rounds: number;
  newId: (side: 'ours') => string;
  log: (line: string) => void;
  check: () => void;
  track: (w: BenchWorker) => void;
}

export interface DisplaysBenchResult {
  markdown: string;
  summary: Record<string, unknown>;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = Date.now();
  const value = await fn();
  return { ms: Date.now() - t0, value };
}

function succeeded(r: ExecutionResult, what: string): ExecutionResult {
  if (r.status !== 'succeeded') throw new Error(`${what}: ${r.status} ${r.stderr} ${r.error?.message ?? ''}`);
  return r;
}

function onePng(r: ExecutionResult, what: string): void {
  succeeded(r, what);
  const png = r.displays?.[0]?.['image/png'];
  if (r.displays?.length !== 1 || !png || Buffer.from(png, 'base64').length !== 100 * 1024)
    throw new Error(`${what}: expected one 100 KB PNG display, got ${JSON.stringify(r.displaysInfo)}`);
}

export async function benchDisplays(deps: DisplaysBenchDeps): Promise<DisplaysBenchResult> {
  const workers: BenchWorker[] = [];
  const sessions: Session[] = [];
  try {
    const noPools = { DS_WARM_POOL_SIZE: '0' };
    const shown = await startBenchWorker(noPools);
    const plain = await startBenchWorker({ ...noPools, DS_DISPLAYS_MAX_COUNT: '0' });
    workers.push(shown, plain);
    for (const w of workers) deps.track(w);
    const on = await shown.client.openSession();
    const off = await plain.client.openSession();
    sessions.push(on, off);
    succeeded(await on.run(PRINT), 'warm-up');
    succeeded(await off.run(PRINT), 'warm-up');
    const ms: Record<'on' | 'off' | 'png' | 'oneShotPrint' | 'oneShotPng' | 'js' | 'ts', number[]> = {
      on: [],
      off: [],
      png: [],
      oneShotPrint: [],
      oneShotPng: [],
      js: [],
      ts: [],
    };
    const oneShot = (input: ExecutionInput) => shown.client.executeCode(input, { executionId: deps.newId('ours') });
    for (let i = 0; i < deps.rounds; i++) {
      deps.check();
      // The one-shot runs' cleanup (their Jobs deleted in the background) is over before the sessions' turn.
      if (i > 0) await new Promise((r) => setTimeout(r, 2000));
      // Each pair takes turns on which goes first.
      const sessionPair = [
        async () => ms.on.push((await timed(async () => succeeded(await on.run(PRINT), 'print(1), displays on'))).ms),
        async () =>
          ms.off.push((await timed(async () => succeeded(await off.run(PRINT), 'print(1), displays off'))).ms),
      ];
      for (const step of i % 2 ? sessionPair.reverse() : sessionPair) await step();
      ms.png.push((await timed(async () => onePng(await on.run(PNG_100KB), 'session PNG'))).ms);
      const oneShotPair = [
        async () =>
          ms.oneShotPrint.push(
            (await timed(async () => succeeded(await oneShot({ code: PRINT }), 'one-shot print'))).ms,
          ),
        async () =>
          ms.oneShotPng.push((await timed(async () => onePng(await oneShot({ code: PNG_100KB }), 'one-shot PNG'))).ms),
      ];
      for (const step of i % 2 ? oneShotPair.reverse() : oneShotPair) await step();
      const languagePair = [
        async () =>
          ms.js.push(
            (
              await timed(async () =>
                succeeded(await oneShot({ code: 'console.log(1)', language: 'javascript' }), 'js'),
              )
            ).ms,
          ),
        async () =>
          ms.ts.push(
            (
              await timed(async () =>
                succeeded(
                  await oneShot({ code: 'const n: number = 1;\nconsole.log(n);', language: 'typescript' }),
                  'ts',
                ),
              )
            ).ms,
          ),
      ];
      for (const step of i % 2 ? languagePair.reverse() : languagePair) await step();
      deps.log(
        `displays round ${i + 1}/${deps.rounds}: session print(1) displays on ${ms.on[i]} ms, off ${ms.off[i]} ms, ` +
          `100 KB PNG ${ms.png[i]} ms; one-shot print(1) ${ms.oneShotPrint[i]} ms, PNG ${ms.oneShotPng[i]} ms; ` +
          `JavaScript ${ms.js[i]} ms, TypeScript ${ms.ts[i]} ms`,
      );
    }
    const s = Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, summarize(v)])) as Record<
      keyof typeof ms,
      Summary
    >;
    const summary = {
      rounds: deps.rounds,
      ...s,
      captureCostP50Ms: median(ms.on) - median(ms.off),
      sessionPngOverPrintP50Ms: median(ms.png) - median(ms.on),
      oneShotPngOverPrintP50Ms: median(ms.oneShotPng) - median(ms.oneShotPrint),
      typeScriptOverJavaScriptP50Ms: median(ms.ts) - median(ms.js),
    };
    const row = (what: string, x: Summary) => [what, x.n, fmt(x.p50), fmt(x.p95), fmt(x.min)];
    const markdown = [
      table([
        ['run', 'n', 'p50 ms', 'p95 ms', 'min ms'],
        row('session print(1), displays on', s.on),
        row('session print(1), displays off (DS_DISPLAYS_MAX_COUNT=0)', s.off),
        row('session run showing one 100 KB PNG', s.png),
        row('one-shot print(1) (cold)', s.oneShotPrint),
        row('one-shot showing one 100 KB PNG (cold)', s.oneShotPng),
        row('one-shot JavaScript console.log(1) (cold)', s.js),
        row('one-shot TypeScript, the same, typed (cold)', s.ts),
      ]),
      '',
      `Display capture costs a session's print(1) ${fmt(summary.captureCostP50Ms)} ms at p50 (on − off, interleaved). ` +
        `Showing a 100 KB PNG adds ${fmt(summary.sessionPngOverPrintP50Ms)} ms to a session run and ` +
        `${fmt(summary.oneShotPngOverPrintP50Ms)} ms to a one-shot one; TypeScript's type check and transpile add ` +
        `${fmt(summary.typeScriptOverJavaScriptP50Ms)} ms to a one-shot run. End to end, until the result is in hand.`,
    ].join('\n');
    return { markdown, summary };
  } finally {
    await Promise.all(sessions.map((x) => x.close().catch(() => undefined)));
    for (const w of workers) await w.close().catch(() => undefined);
  }
}

/**
 * The run command's progress line never shares a line with the program's output, and takes no signal of the
 * process for itself (the command's Ctrl-C must cancel the execution first).
 */
import type { ProgressUpdate } from '../../client';
import { ProgressView } from '../../cli/progress-view';

const CLEAR = '\r\x1b[2K';

function terminal() {
  const writes: string[] = [];
  return { isTTY: true, columns: 60, writes, write: (t: string) => writes.push(t) > 0 };
}

const running: ProgressUpdate = {
  stage: 'running',
  detail: 'running in pod ds-x (warm)',
  attempt: 1,
};

test('the spinner line is cleared before output, and not drawn again once output flows', () => {
  const t = terminal();
  const view = new ProgressView(t, { TERM: 'xterm' });
  view.update(running);
  expect(t.writes.join('')).toContain('running: running in pod ds-x');
  view.beforeOutput();
  expect(t.writes[t.writes.length - 1]).toBe(CLEAR);
  const before = t.writes.length;
  view.afterOutput('tick 2');
  view.update({ ...running, detail: 'still running' });
  expect(t.writes.length).toBe(before);
  view.done('succeeded', true);
  // The output ended mid-line: the summary starts on a line of its own.
  expect(t.writes[t.writes.length - 1]).toMatch(/^\n.*succeeded\n$/);
});

test("the command's own lines never glue onto the program's output", () => {
  const t = terminal();
  const view = new ProgressView(t, { TERM: 'xterm' });
  view.beforeOutput();
  view.afterOutput('no newline yet');
  view.line('[durable-sandbox] cancelling x');
  expect(t.writes[t.writes.length - 1]).toBe('\n[durable-sandbox] cancelling x\n');
  view.afterOutput('a full line\n');
  view.line('[durable-sandbox] again');
  expect(t.writes[t.writes.length - 1]).toBe('[durable-sandbox] again\n');
});

test('a long status is cut to one terminal line (a wrapped line could not be cleared)', () => {
  const t = terminal();
  const view = new ProgressView(t, { TERM: 'xterm' });
  view.update({ ...running, detail: 'x'.repeat(200) });
  view.beforeOutput();
  const drawn = t.writes.find((w) => w.startsWith(CLEAR) && w.length > CLEAR.length)!;
  expect(drawn.length - CLEAR.length).toBeLessThanOrEqual(59);
});

test('not a terminal: plain lines, no escapes', () => {
  const writes: string[] = [];
  const view = new ProgressView({ isTTY: false, write: (t: string) => writes.push(t) > 0 }, {});
  view.update(running);
  view.done('succeeded', true);
  expect(writes.join('')).not.toContain('\x1b');
  expect(writes).toEqual(['[durable-sandbox] running: running in pod ds-x (warm)\n', '[durable-sandbox] succeeded\n']);
});

test('it takes no signal handler of the process', () => {
  const before = ['SIGINT', 'SIGTERM'].map((s) => process.listenerCount(s));
  const view = new ProgressView(terminal(), { TERM: 'xterm' });
  view.update(running);
  expect(['SIGINT', 'SIGTERM'].map((s) => process.listenerCount(s))).toEqual(before);
  view.done('ok', true);
});

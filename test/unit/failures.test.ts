/** The README's table of failure reasons is the list in core/failures.ts, word for word. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { FAILURE_REASONS } from '../../core/failures';

test('README lists every failure reason, with its retry behaviour and meaning, and no other', () => {
  const readme = readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const rows = [...readme.matchAll(/^\| `(\w+)` \| (yes|no) \| (.+) \|$/gm)].map(([, reason, retried, meaning]) => ({
    reason,
    retryable: retried === 'yes',
    meaning,
  }));
  const expected = Object.entries(FAILURE_REASONS).map(([reason, r]) => ({
    reason,
    retryable: r.retryable,
    meaning: r.meaning,
  }));
  expect(rows).toEqual(expected);
});

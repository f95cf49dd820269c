import { matchesSelector, newerVersion } from '../../core/selector';
import { resourceNames } from '../../core/names';

describe('matchesSelector', () => {
  const labels = { 'app.kubernetes.io/managed-by': 'durable-sandbox', 'durable-sandbox.dev/attempt': '1' };

  it('matches when every term holds', () => {
    expect(matchesSelector(labels, 'app.kubernetes.io/managed-by=durable-sandbox,durable-sandbox.dev/attempt=1')).toBe(
      true,
    );
    expect(matchesSelector(labels, '')).toBe(true);
    expect(matchesSelector(labels, 'durable-sandbox.dev/attempt')).toBe(true);
  });

  it('does not match when a term fails or a label is missing', () => {
    expect(matchesSelector(labels, 'durable-sandbox.dev/attempt=2')).toBe(false);
    expect(matchesSelector(labels, 'durable-sandbox.dev/pool')).toBe(false);
    expect(matchesSelector(undefined, 'a=b')).toBe(false);
    expect(matchesSelector({ a: 'b=c' }, 'a=b')).toBe(false);
  });

  it("matches an attempt's pods by the selector its names give", () => {
    const n = resourceNames('exec-1', 2);
    const pod = {
      'app.kubernetes.io/managed-by': 'durable-sandbox',
      'durable-sandbox.dev/execution': n.executionLabel,
      'durable-sandbox.dev/attempt': '2',
    };
    expect(matchesSelector(pod, n.attemptSelector)).toBe(true);
    expect(matchesSelector(pod, resourceNames('exec-1', 1).attemptSelector)).toBe(false);
  });

  it('refuses set-based terms rather than mismatching them', () => {
    expect(() => matchesSelector(labels, 'a!=b')).toThrow(/unsupported/);
    expect(() => matchesSelector(labels, '!a')).toThrow(/unsupported/);
  });
});

describe('newerVersion', () => {
  it('compares etcd revisions as numbers', () => {
    expect(newerVersion('100', '99')).toBe(true);
    expect(newerVersion('99', '100')).toBe(false);
    expect(newerVersion('100', '100')).toBe(true);
  });
  it('takes the new one when either is not a number', () => {
    expect(newerVersion('abc', '100')).toBe(true);
    expect(newerVersion(undefined, '100')).toBe(true);
  });
});

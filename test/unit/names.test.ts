import { hash16, resourceNames } from '../../core/names';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

describe('resourceNames', () => {
  test.each(['simple', 'Agent/Session:42@host', 'x'.repeat(200), '---', 'ÄÖÜ unicode id', 'a'])(
    '%s gives a valid, short, deterministic name',
    (id) => {
      const a = resourceNames(id, 1);
      expect(a.name).toMatch(DNS1123_LABEL);
      expect(a.name.length).toBeLessThanOrEqual(63 - 6); // room for the Job controller's pod suffix
      expect(resourceNames(id, 1)).toEqual(a);
      expect(a.executionLabel).toMatch(/^[0-9a-f]{16}$/);
    },
  );

  test('attempts get different names but the same execution label', () => {
    const a = resourceNames('run-1', 1);
    const b = resourceNames('run-1', 2);
    expect(a.name).not.toBe(b.name);
    expect(a.executionLabel).toBe(b.executionLabel);
    expect(b.attemptSelector).toContain('durable-sandbox.dev/attempt=2');
  });

  test('ids that slug alike still get different names', () => {
    expect(resourceNames('Run_1', 1).name).not.toBe(resourceNames('run-1', 1).name);
  });

  test('rejects impossible attempts', () => {
    expect(() => resourceNames('x', 0)).toThrow(RangeError);
    expect(() => resourceNames('x', 1.5)).toThrow(RangeError);
  });

  test('hash16 spreads similar inputs', () => {
    const hashes = new Set(Array.from({ length: 10_000 }, (_, i) => hash16(`exec-${i}`)));
    expect(hashes.size).toBe(10_000);
  });
});

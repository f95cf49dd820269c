import { DEFAULT_POLICY, HARD_LIMITS } from '../../core/policy';
import { InvalidInputError, utf8Length, validateExecutionId, validateInput } from '../../core/validate';

const policy = DEFAULT_POLICY;

function rejection(input: unknown): InvalidInputError {
  try {
    validateInput(input, policy);
  } catch (e) {
    if (e instanceof InvalidInputError) return e;
    throw e;
  }
  throw new Error('accepted');
}

describe('validateInput', () => {
  test('applies defaults', () => {
    expect(validateInput({ code: 'print(1)' }, policy)).toEqual({
      code: 'print(1)',
      language: 'python',
      timeoutSeconds: policy.defaultTimeoutSeconds,
      files: [],
      cpu: policy.defaultCpu,
      memory: policy.defaultMemory,
      env: {},
    });
  });

  test.each([
    [{}, 'code', 'required'],
    [{ code: '' }, 'code', 'non-empty'],
    [{ code: '  \n\t' }, 'code', 'non-empty'],
    [{ code: 'x'.repeat(HARD_LIMITS.maxCodeBytes + 1) }, 'code', 'max 256 KiB'],
    [{ code: 'é'.repeat(HARD_LIMITS.maxCodeBytes / 2 + 1) }, 'code', 'max 256 KiB'],
    [{ code: 'x', language: 'ruby' }, 'language', 'one of python, bash, javascript, typescript'],
    [{ code: 'x', timeoutSeconds: 0 }, 'timeoutSeconds', 'integer >= 1'],
    [{ code: 'x', timeoutSeconds: 1.5 }, 'timeoutSeconds', 'integer >= 1'],
    [{ code: 'x', timeoutSeconds: 10 ** 9 }, 'timeoutSeconds', 'max 3600'],
    [{ code: 'x', limits: { cpu: 'lots' } }, 'limits.cpu', 'quantity'],
    [{ code: 'x', limits: { cpu: '64' } }, 'limits.cpu', 'max 2'],
    [{ code: 'x', limits: { cpu: '1m' } }, 'limits.cpu', 'min 10'],
    [{ code: 'x', limits: { memory: '1Ti' } }, 'limits.memory', 'max 4Gi'],
    [{ code: 'x', limits: { memory: '1Ki' } }, 'limits.memory', `min ${HARD_LIMITS.minMemoryBytes}`],
    [{ code: 'x', files: [{ name: '../etc/passwd', content: '' }] }, 'files[0].name', 'charset'],
    [{ code: 'x', files: [{ name: 'a/b', content: '' }] }, 'files[0].name', 'charset'],
    [{ code: 'x', files: [{ name: '..', content: '' }] }, 'files[0].name', 'charset'],
    [{ code: 'x', files: [{ name: '.hidden', content: '' }] }, 'files[0].name', 'charset'],
    [
      {
        code: 'x',
        files: [
          { name: 'a', content: '' },
          { name: 'a', content: '' },
        ],
      },
      'files[1].name',
      'unique',
    ],
    [{ code: 'x', files: [{ name: 'a', content: '!!', encoding: 'base64' }] }, 'files[0].content', 'base64'],
    [
      { code: 'x', files: Array.from({ length: 21 }, (_, i) => ({ name: `f${i}`, content: '' })) },
      'files',
      'max 20 files',
    ],
    [{ code: 'x', files: [{ name: 'big', content: 'x'.repeat(600 * 1024) }] }, 'files', 'max 512 KiB in all'],
    [{ code: 'x', env: { 'BAD-NAME': 'v' } }, 'env.BAD-NAME', 'charset'],
    [{ code: 'x', env: { A: 1 } }, 'env.A', 'type'],
    [{ code: 'x', env: { A: 'x'.repeat(40 * 1024) } }, 'env', 'max 32 KiB in all'],
    ['not an object', 'input', 'type'],
  ])('%# rejects bad input: field %s', (input, field, limit) => {
    const err = rejection(input);
    expect(err.field).toBe(field);
    expect(err.limit).toBe(limit);
    expect(err.message.startsWith(`${field}: `)).toBe(true);
  });

  test('accepts base64 files and counts their decoded size', () => {
    const content = Buffer.alloc(400 * 1024).toString('base64'); // 546 KiB of base64 for 400 KiB of bytes
    const r = validateInput({ code: 'x', files: [{ name: 'blob.bin', content, encoding: 'base64' }] }, policy);
    expect(r.files[0].encoding).toBe('base64');
  });

  test('honours the policy maximum timeout', () => {
    expect(() => validateInput({ code: 'x', timeoutSeconds: 20 }, { ...policy, maxTimeoutSeconds: 10 })).toThrow(
      'timeoutSeconds: 20 is above the maximum 10',
    );
  });
});

describe('validateExecutionId', () => {
  test.each(['', 'x'.repeat(201), ' space', '-leading', 'a b'])('rejects %j', (id) => {
    expect(() => validateExecutionId(id)).toThrow(InvalidInputError);
  });
  test.each(['a', 'agent-7/session:3', 'user@example.com', 'A.B_C'])('accepts %j', (id) => {
    expect(validateExecutionId(id)).toBe(id);
  });
});

test('utf8Length agrees with Buffer', () => {
  for (const s of ['', 'abc', 'é', '日本語', '😀x', '\ud800']) {
    expect(utf8Length(s)).toBe(Buffer.byteLength(s, 'utf8'));
  }
});

/**
 * Properties of the input validator (fast-check): text that reaches the sandbox is accepted exactly when it arrives
 * there byte for byte (well-formed Unicode, and no NUL where it becomes a C string or source code); everything else
 * is an InvalidInputError naming the field and the limit. What the sandbox really sees is checked on the real stack
 * (test/integration/execute-code.test.ts).
 */
import fc from 'fast-check';
import { buildConfigMap } from '../../core/manifests';
import { DEFAULT_POLICY } from '../../core/policy';
import { InvalidInputError, validateInput, type ExecutionRequest } from '../../core/validate';

/** Any UTF-16 code units (lone surrogates included), any code points, and strings with NULs in them. */
const anyText = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 })).map(([a, b]) => `${a}\u0000${b}`),
);

/** What the sandbox gets: the text's UTF-8 bytes, decoded again. */
const survives = (s: string) => Buffer.from(Buffer.from(s, 'utf8').toString('utf8'), 'utf8').toString('utf8') === s;
const wellFormed = (s: string) => Buffer.from(s, 'utf8').toString('utf8') === s;

function outcome(input: unknown): ExecutionRequest | InvalidInputError {
  try {
    return validateInput(input, DEFAULT_POLICY);
  } catch (err) {
    if (err instanceof InvalidInputError) return err;
    throw err;
  }
}

test('env values: accepted exactly when well-formed and free of NUL; refusals name the variable and the limit', () => {
  fc.assert(
    fc.property(anyText, (value) => {
      const r = outcome({ code: 'print(1)', env: { VALUE: value } });
      const ok = wellFormed(value) && !value.includes('\u0000');
      if (ok) {
        expect(r).not.toBeInstanceOf(InvalidInputError);
        expect((r as ExecutionRequest).env.VALUE).toBe(value);
        expect(survives(value)).toBe(true);
      } else {
        expect(r).toBeInstanceOf(InvalidInputError);
        expect((r as InvalidInputError).field).toBe('env.VALUE');
        expect(['no NUL', 'well-formed Unicode']).toContain((r as InvalidInputError).limit);
      }
    }),
    { numRuns: 500 },
  );
});

test('code: accepted exactly when well-formed and free of NUL (and not blank)', () => {
  fc.assert(
    fc.property(anyText, (text) => {
      const code = `print(1)\n${text}`;
      const r = outcome({ code });
      const ok = wellFormed(code) && !code.includes('\u0000');
      expect(r instanceof InvalidInputError).toBe(!ok);
      if (!ok) expect((r as InvalidInputError).field).toBe('code');
      // Accepted code goes into the ConfigMap as the very same text.
      if (ok) {
        const cm = buildConfigMap({
          executionId: 'e',
          attempt: 1,
          namespace: 'n',
          request: r as ExecutionRequest,
          policy: DEFAULT_POLICY,
          launcherSource: '',
        });
        expect(Object.values(cm.data ?? {})).toContain(code);
      }
    }),
    { numRuns: 500 },
  );
});

test('utf8 file contents: NUL is fine (it is a byte like any other), an unpaired surrogate is refused', () => {
  fc.assert(
    fc.property(anyText, (content) => {
      const r = outcome({ code: 'print(1)', files: [{ name: 'f.txt', content }] });
      expect(r instanceof InvalidInputError).toBe(!wellFormed(content));
      if (r instanceof InvalidInputError) {
        expect(r).toMatchObject({ field: 'files[0].content', limit: 'well-formed Unicode' });
      } else {
        expect(r.files[0].content).toBe(content);
      }
    }),
    { numRuns: 500 },
  );
});

test('env names: only letters, digits and _ (not first a digit); anything else is refused by name', () => {
  fc.assert(
    fc.property(anyText, (name) => {
      const r = outcome({ code: 'print(1)', env: { [name]: 'x' } });
      expect(r instanceof InvalidInputError).toBe(!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name));
    }),
    { numRuns: 300 },
  );
});

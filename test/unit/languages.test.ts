/**
 * The language list (core/languages.ts) is the one place a language is known: the helpers every surface uses
 * follow from it, and no shipped source names a language anywhere else.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  DEFAULT_LANGUAGE,
  imageVariable,
  isLanguage,
  languageChoices,
  LANGUAGE_NAMES,
  languageNamed,
  languageOfFile,
  LANGUAGES,
  poolSizeVariable,
  SANDBOX_LANGUAGES,
  sandboxLanguage,
} from '../../core/languages';
import { DEFAULT_POLICY } from '../../core/policy';
import { validateInput, InvalidInputError } from '../../core/validate';
import { loadConfig } from '../../worker/config';

const ROOT = path.join(__dirname, '..', '..');

test('names, aliases (any case) and file endings resolve to a language; anything else to none', () => {
  expect(LANGUAGE_NAMES).toEqual(['python', 'bash', 'javascript', 'typescript']);
  expect(languageNamed('JavaScript')).toBe('javascript');
  expect(languageNamed('js')).toBe('javascript');
  expect(languageNamed('node')).toBe('javascript');
  expect(languageNamed('shell')).toBe('bash');
  expect(languageNamed('py')).toBe('python');
  expect(languageNamed('ruby')).toBeUndefined();
  expect(languageNamed('toString')).toBeUndefined();
  expect(isLanguage('constructor')).toBe(false);
  expect(languageOfFile('dir/Analysis.PY')).toBe('python');
  expect(languageOfFile('run.sh')).toBe('bash');
  expect(languageOfFile('sum.js')).toBe('javascript');
  expect(languageOfFile('sum.ts')).toBe('typescript');
  expect(languageNamed('TS')).toBe('typescript');
  expect(languageOfFile('notes.txt')).toBeUndefined();
  expect(languageChoices()).toBe('python, bash, javascript or typescript');
});

test('every entry is complete: its program file has its own ending, its command runs that file', () => {
  const aliases = new Set<string>();
  for (const name of LANGUAGE_NAMES) {
    const l = LANGUAGES[name];
    expect(l.extensions.some((e) => l.file.endsWith(e))).toBe(true);
    expect(l.command[l.command.length - 1]).toBe(`/sandbox/${l.file}`);
    expect(l.image).toMatch(/\S/);
    for (const a of [name, ...l.aliases]) {
      expect(aliases.has(a)).toBe(false);
      aliases.add(a);
    }
  }
  expect(isLanguage(DEFAULT_LANGUAGE)).toBe(true);
});

test('the policy and the worker configuration have an image and a pool size for every language', () => {
  expect(Object.keys(DEFAULT_POLICY.images).sort()).toEqual([...LANGUAGE_NAMES].sort());
  const c = loadConfig({
    DS_IMAGE: 'shared:1',
    [imageVariable('javascript')]: 'node:1',
    DS_WARM_POOL_SIZE: '2',
    [poolSizeVariable('bash')]: '0',
  });
  // TypeScript runs in JavaScript's sandboxes: its image, its pool.
  expect(c.policy.images).toEqual({ python: 'shared:1', bash: 'shared:1', javascript: 'node:1', typescript: 'node:1' });
  expect(c.pool.sizes).toEqual({ python: 2, bash: 0, javascript: 2 });
  expect(SANDBOX_LANGUAGES).toEqual(['python', 'bash', 'javascript']);
  expect(sandboxLanguage('typescript')).toBe('javascript');
  expect(() => loadConfig({ DS_WARM_POOL_SIZE_JAVASCRIPT: 'lots' })).toThrow(/DS_WARM_POOL_SIZE_JAVASCRIPT=lots/);
});

test('validation names the choices', () => {
  expect(validateInput({ code: 'console.log(1)', language: 'javascript' }, DEFAULT_POLICY).language).toBe('javascript');
  expect(() => validateInput({ code: 'x', language: 'ruby' }, DEFAULT_POLICY)).toThrow(InvalidInputError);
  expect(() => validateInput({ code: 'x', language: 'ruby' }, DEFAULT_POLICY)).toThrow(
    'language: "ruby" is not supported (python, bash, javascript or typescript)',
  );
  try {
    validateInput({ code: 'x', language: 'ruby' }, DEFAULT_POLICY);
  } catch (err) {
    expect(err).toMatchObject({ field: 'language', limit: 'one of python, bash, javascript, typescript' });
  }
});

/** The shipped TypeScript sources (not tests, not the language list itself). */
function shippedSources(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = path.join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) out.push(p);
    }
  };
  for (const dir of ['core', 'activities', 'workflows', 'worker', 'client', 'cli', 'integrations']) {
    walk(path.join(ROOT, dir));
  }
  return out.filter((p) => !p.endsWith(path.join('core', 'languages.ts')));
}

test('no shipped source names a language outside the language list', () => {
  const names = [...LANGUAGE_NAMES, ...LANGUAGE_NAMES.flatMap((l) => LANGUAGES[l].aliases)];
  const literal = new RegExp(`(['"\`])(${names.join('|')})\\1`);
  const found = shippedSources().flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .map((line, i) => ({ where: `${path.relative(ROOT, file)}:${i + 1}`, line }))
      // Comments aside, and the local stack's shell scripts, which run on the host's bash, not as a language.
      .filter(({ line }) => literal.test(line) && !/^\s*(\*|\/\/)/.test(line) && !/spawn(Sync)?\('bash'/.test(line)),
  );
  expect(found).toEqual([]);
});

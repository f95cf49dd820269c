/**
 * The language list: every language the sandbox runs and all the project knows about it. Adding a language is one
 * entry here plus its image (the local stack builds its images in scripts/stack/images.sh); every surface follows
 * from this list: input validation (client and workflow), the CLI's --language and file endings, the MCP tool's
 * schema, the ADK executor (ADK's CodeExecutionLanguage values are names or aliases here), the worker's
 * DS_IMAGE_<NAME> and DS_WARM_POOL_SIZE_<NAME> variables, one warm pool per language, and the README's table.
 *
 * Every image must have python3: the launcher (launcher/launcher.py) runs on it and starts `command`.
 */

/** The interpreters the launcher can keep for a session (launcher/session.py's KERNELS). */
export type SessionKernel = 'python' | 'bash' | 'javascript' | 'typescript';

export interface LanguageSpec {
  /** How people call it in help texts and tool descriptions. */
  title: string;
  /** File name of the program inside /sandbox. */
  file: string;
  /** Command that runs the program. */
  command: readonly string[];
  /** Environment every program of this language gets. */
  env: Readonly<Record<string, string>>;
  /** File name endings the CLI takes for this language when no --language is given. */
  extensions: readonly string[];
  /** Other names callers use for it (--language, ADK's CodeExecutionLanguage, a code fence's tag). */
  aliases: readonly string[];
  /** Its image outside the local stack (DS_IMAGE_<NAME> or DS_IMAGE choose another); must have python3. */
  image: string;
  /**
   * Sessions: the interpreter the launcher keeps for a session's runs (launcher.py --session), run by the first word
   * of `command`; a language without one runs one-shot only.
   */
  sessionKernel?: SessionKernel;
  /**
   * Runs in the sandboxes of another language (the same image and environment): that language's image and warm pool
   * serve it, and it has no DS_IMAGE_<NAME> or DS_WARM_POOL_SIZE_<NAME> of its own.
   */
  sandboxOf?: string;
  /**
   * Sessions: the kept interpreter's state is checkpointed after each run and loaded on a new pod (launcher/
   * session.py's STATE_KERNELS); without, a new pod's state is rebuilt by running the earlier runs again.
   */
  checkpointsState?: boolean;
}

export const SANDBOX_DIR = '/sandbox';

/** What runs the launcher in every image, whatever the language. */
export const LAUNCHER_INTERPRETER = 'python3';

export const LANGUAGES = {
  python: {
    title: 'Python 3',
    file: 'main.py',
    command: ['python3', `${SANDBOX_DIR}/main.py`],
    // Not PYTHONUNBUFFERED: a system call per print is what makes printing slow under gVisor. The launcher has the
    // program's Python flush its buffers every 50 ms instead, so output stays live.
    env: { PYTHONDONTWRITEBYTECODE: '1' },
    extensions: ['.py'],
    aliases: ['py', 'python3'],
    image: 'python:3.12-slim',
    sessionKernel: 'python',
    checkpointsState: true,
  },
  bash: {
    title: 'bash',
    file: 'main.sh',
    command: ['bash', `${SANDBOX_DIR}/main.sh`],
    env: {},
    extensions: ['.sh', '.bash'],
    aliases: ['sh', 'shell'],
    image: 'python:3.12-slim',
    sessionKernel: 'bash',
    checkpointsState: true,
  },
  javascript: {
    title: 'JavaScript (Node.js)',
    file: 'main.js',
    command: ['node', `${SANDBOX_DIR}/main.js`],
    // No update check, no REPL history; the program's heap follows the container's memory limit (Node does that).
    env: { NO_UPDATE_NOTIFIER: '1', NODE_REPL_HISTORY: '' },
    extensions: ['.js', '.cjs'],
    aliases: ['js', 'node', 'nodejs'],
    image: 'nikolaik/python-nodejs:python3.12-nodejs22-slim',
    sessionKernel: 'javascript',
  },
  typescript: {
    title: 'TypeScript (Node.js)',
    file: 'main.ts',
    // Type-checked, then transpiled, by the TypeScript compiler of the image (the launcher's Node.js preload).
    command: ['node', `${SANDBOX_DIR}/main.ts`],
    env: { NO_UPDATE_NOTIFIER: '1', NODE_REPL_HISTORY: '' },
    extensions: ['.ts', '.cts'],
    aliases: ['ts'],
    image: 'nikolaik/python-nodejs:python3.12-nodejs22-slim',
    sessionKernel: 'typescript',
    sandboxOf: 'javascript',
  },
} as const satisfies Record<string, LanguageSpec>;

/** Languages the sandbox runs; each is one entry of LANGUAGES. */
export type Language = keyof typeof LANGUAGES;

/** Every language, in the list's order (the MCP schema's enum, the worker's pools). */
export const LANGUAGE_NAMES = Object.keys(LANGUAGES) as [Language, ...Language[]];

/** The language whose sandboxes (image, warm pool) run this one's programs: itself, or its `sandboxOf`. */
export function sandboxLanguage(language: Language): Language {
  return ((LANGUAGES[language] as LanguageSpec).sandboxOf as Language | undefined) ?? language;
}

/** The languages with sandboxes of their own: one image variable and one warm pool each. */
export const SANDBOX_LANGUAGES: readonly Language[] = LANGUAGE_NAMES.filter((l) => sandboxLanguage(l) === l);

/** The interpreter a session of this language keeps; undefined: the language runs one-shot only. */
export function sessionKernelOf(language: Language): SessionKernel | undefined {
  return (LANGUAGES[language] as LanguageSpec).sessionKernel;
}

/** The languages a session can keep an interpreter of. */
export const SESSION_LANGUAGES: readonly Language[] = LANGUAGE_NAMES.filter(
  (l) => (LANGUAGES[l] as LanguageSpec).sessionKernel !== undefined,
);

/** The language of a program that names none. */
export const DEFAULT_LANGUAGE: Language = 'python';

export function isLanguage(value: unknown): value is Language {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(LANGUAGES, value);
}

/** The language called `name` (its name or an alias, any case); undefined if none is. */
export function languageNamed(name: string): Language | undefined {
  const n = name.trim().toLowerCase();
  if (isLanguage(n)) return n;
  return LANGUAGE_NAMES.find((l) => (LANGUAGES[l].aliases as readonly string[]).includes(n));
}

/** The language a file's name says (by its ending); undefined if none does. */
export function languageOfFile(fileName: string): Language | undefined {
  const lower = fileName.toLowerCase();
  return LANGUAGE_NAMES.find((l) => (LANGUAGES[l].extensions as readonly string[]).some((e) => lower.endsWith(e)));
}

/** "python, bash or javascript": for messages that list the choices. */
export function languageChoices(): string {
  return LANGUAGE_NAMES.length === 1
    ? LANGUAGE_NAMES[0]
    : `${LANGUAGE_NAMES.slice(0, -1).join(', ')} or ${LANGUAGE_NAMES[LANGUAGE_NAMES.length - 1]}`;
}

/** The worker's variable that names a language's image: DS_IMAGE_PYTHON, DS_IMAGE_JAVASCRIPT, … */
export function imageVariable(language: Language): string {
  return `DS_IMAGE_${language.toUpperCase()}`;
}

/** The worker's variable that sizes a language's warm pool: DS_WARM_POOL_SIZE_PYTHON, … */
export function poolSizeVariable(language: Language): string {
  return `DS_WARM_POOL_SIZE_${language.toUpperCase()}`;
}

/**
 * The language table: how each language's program is stored and started. Adding a language is one entry here
 * plus its image in the execution policy. Every image must have python3 (the launcher runs on it).
 */
import type { Language } from './types';

export interface LanguageSpec {
  /** File name of the program inside /sandbox. */
  file: string;
  /** Command that runs the program. */
  command: string[];
  /** Environment every program of this language gets. */
  env: Record<string, string>;
}

export const SANDBOX_DIR = '/sandbox';

export const LANGUAGES: Record<Language, LanguageSpec> = {
  python: {
    file: 'main.py',
    command: ['python3', `${SANDBOX_DIR}/main.py`],
    // Not PYTHONUNBUFFERED: a system call per print is what makes printing slow under gVisor. The launcher has the
    // program's Python flush its buffers every 50 ms instead, so output stays live.
    env: { PYTHONDONTWRITEBYTECODE: '1' },
  },
  bash: {
    file: 'main.sh',
    command: ['bash', `${SANDBOX_DIR}/main.sh`],
    env: {},
  },
};

export function isLanguage(value: unknown): value is Language {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(LANGUAGES, value);
}

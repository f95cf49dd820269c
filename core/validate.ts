/**
 * Input validation, run twice: by the client before it starts a workflow and by the workflow before it creates
 * anything. Pure: no Node APIs, so it runs inside the workflow sandbox too.
 */
import { DEFAULT_LANGUAGE, isLanguage, languageChoices, LANGUAGE_NAMES } from './languages';
import { checkNetwork, type EgressRule } from './egress';
import { HARD_LIMITS, type ExecutionPolicy } from './policy';
import { bytes, cpuMillis } from './quantity';
import type { ExecutionInput, InputFile, Language } from './types';

/** A bad input: names the field and the limit it broke. Never retried. */
export class InvalidInputError extends Error {
  override readonly name = 'InvalidInputError';
  constructor(
    readonly field: string,
    readonly limit: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** An input with every default applied and every limit checked. */
export interface ExecutionRequest {
  code: string;
  language: Language;
  timeoutSeconds: number;
  files: InputFile[];
  cpu: string;
  memory: string;
  env: Record<string, string>;
  /** The domains the program may reach through the egress gateway (absent: none). */
  egress?: EgressRule[];
}

export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const EXECUTION_ID = /^[A-Za-z0-9][A-Za-z0-9._:@/-]*$/;
export const MAX_EXECUTION_ID_LENGTH = 200;

/** A UTF-16 code unit that is half of a surrogate pair without its other half: it has no UTF-8 form. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Text the sandbox receives as bytes: it must be well-formed Unicode (a lone surrogate would arrive as U+FFFD, not as
 * given) and, where it becomes a C string (environment variables) or source code, free of NUL characters (cut off,
 * or refused by the interpreter).
 */
function checkText(field: string, s: string, allowNul: boolean): void {
  if (!allowNul && s.includes('\u0000'))
    fail(field, 'no NUL', `holds a NUL character at offset ${s.indexOf('\u0000')}`);
  const m = LONE_SURROGATE.exec(s);
  if (m) {
    fail(
      field,
      'well-formed Unicode',
      `holds an unpaired surrogate (U+${m[0].charCodeAt(0).toString(16).toUpperCase()}) at offset ${m.index}`,
    );
  }
}

function fail(field: string, limit: string, message: string): never {
  throw new InvalidInputError(field, limit, message);
}

function kib(n: number): string {
  return `${Math.round(n / 1024)} KiB`;
}

export function validateExecutionId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0) fail('executionId', 'required', 'must be a non-empty string');
  if (id.length > MAX_EXECUTION_ID_LENGTH) {
    fail('executionId', `max ${MAX_EXECUTION_ID_LENGTH} characters`, `is ${id.length} characters long`);
  }
  if (!EXECUTION_ID.test(id)) {
    fail('executionId', 'charset', 'may hold letters, digits and . _ : @ / - and must start with a letter or digit');
  }
  return id;
}

function fileBytes(f: InputFile): number {
  if (f.encoding === 'base64') {
    const pad = f.content.endsWith('==') ? 2 : f.content.endsWith('=') ? 1 : 0;
    return (f.content.length / 4) * 3 - pad;
  }
  return utf8Length(f.content);
}

function validateFiles(files: unknown): InputFile[] {
  if (files === undefined) return [];
  if (!Array.isArray(files)) fail('files', 'type', 'must be an array');
  if (files.length > HARD_LIMITS.maxFiles) {
    fail('files', `max ${HARD_LIMITS.maxFiles} files`, `has ${files.length} files`);
  }
  const seen = new Set<string>();
  let total = 0;
  const out: InputFile[] = [];
  files.forEach((raw: unknown, i) => {
    const field = `files[${i}]`;
    if (typeof raw !== 'object' || raw === null) fail(field, 'type', 'must be an object');
    const f = raw as Partial<InputFile>;
    if (typeof f.name !== 'string' || !FILE_NAME.test(f.name) || f.name === '.' || f.name === '..') {
      fail(`${field}.name`, 'charset', 'must be a plain file name (letters, digits, . _ -; no "/" and no "..")');
    }
    if (f.name.length > HARD_LIMITS.maxFileNameLength) {
      fail(`${field}.name`, `max ${HARD_LIMITS.maxFileNameLength} characters`, `is ${f.name.length} long`);
    }
    if (seen.has(f.name)) fail(`${field}.name`, 'unique', `"${f.name}" is given twice`);
    seen.add(f.name);
    const encoding = f.encoding ?? 'utf8';
    if (encoding !== 'utf8' && encoding !== 'base64') fail(`${field}.encoding`, 'enum', 'must be "utf8" or "base64"');
    if (typeof f.content !== 'string') fail(`${field}.content`, 'type', 'must be a string');
    if (encoding === 'base64' && !BASE64.test(f.content)) fail(`${field}.content`, 'base64', 'is not valid base64');
    // NUL is fine in a file's bytes; an unpaired surrogate has no bytes at all (send binary data as base64).
    if (encoding === 'utf8') checkText(`${field}.content`, f.content, true);
    const file: InputFile = { name: f.name, content: f.content, encoding };
    total += fileBytes(file);
    out.push(file);
  });
  if (total > HARD_LIMITS.maxFileBytesTotal) {
    fail('files', `max ${kib(HARD_LIMITS.maxFileBytesTotal)} in all`, `hold ${kib(total)}`);
  }
  return out;
}

function validateEnv(env: unknown): Record<string, string> {
  if (env === undefined) return {};
  if (typeof env !== 'object' || env === null || Array.isArray(env)) fail('env', 'type', 'must be an object');
  const entries = Object.entries(env);
  if (entries.length > HARD_LIMITS.maxEnvVars) {
    fail('env', `max ${HARD_LIMITS.maxEnvVars} variables`, `has ${entries.length}`);
  }
  let total = 0;
  for (const [k, v] of entries) {
    if (!ENV_NAME.test(k)) fail(`env.${k}`, 'charset', 'names may hold letters, digits and _ only');
    if (typeof v !== 'string') fail(`env.${k}`, 'type', 'must be a string');
    checkText(`env.${k}`, v, false);
    total += utf8Length(k) + utf8Length(v);
  }
  if (total > HARD_LIMITS.maxEnvBytesTotal) {
    fail('env', `max ${kib(HARD_LIMITS.maxEnvBytesTotal)} in all`, `holds ${kib(total)}`);
  }
  return { ...(env as Record<string, string>) };
}

function validateQuantity(
  field: string,
  value: unknown,
  fallback: string,
  parse: (q: string) => number | null,
  min: number,
  max: string,
): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || parse(value) === null) {
    fail(field, 'quantity', `${JSON.stringify(value)} is not a Kubernetes quantity`);
  }
  const n = parse(value) as number;
  if (n < min) fail(field, `min ${min}`, `"${value}" is below the minimum`);
  if (n > (parse(max) as number)) fail(field, `max ${max}`, `"${value}" is above the maximum ${max}`);
  return value;
}

export function validateInput(input: unknown, policy: ExecutionPolicy): ExecutionRequest {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) fail('input', 'type', 'must be an object');
  const i = input as Partial<ExecutionInput>;
  if (typeof i.code !== 'string') fail('code', 'required', 'must be a string');
  if (i.code.trim().length === 0) fail('code', 'non-empty', 'is empty');
  checkText('code', i.code, false);
  const codeBytes = utf8Length(i.code);
  if (codeBytes > HARD_LIMITS.maxCodeBytes) {
    fail('code', `max ${kib(HARD_LIMITS.maxCodeBytes)}`, `is ${kib(codeBytes)} (${codeBytes} bytes)`);
  }
  const language = i.language ?? DEFAULT_LANGUAGE;
  if (!isLanguage(language)) {
    fail(
      'language',
      `one of ${LANGUAGE_NAMES.join(', ')}`,
      `"${String(language)}" is not supported (${languageChoices()})`,
    );
  }
  const timeout = i.timeoutSeconds ?? policy.defaultTimeoutSeconds;
  const maxTimeout = Math.min(policy.maxTimeoutSeconds, HARD_LIMITS.maxTimeoutSeconds);
  if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1) {
    fail('timeoutSeconds', 'integer >= 1', `${String(timeout)} is not a whole number of seconds >= 1`);
  }
  if (timeout > maxTimeout)
    fail('timeoutSeconds', `max ${maxTimeout}`, `${timeout} is above the maximum ${maxTimeout}`);
  const limits = i.limits ?? {};
  if (typeof limits !== 'object' || limits === null) fail('limits', 'type', 'must be an object');
  const cpu = validateQuantity(
    'limits.cpu',
    limits.cpu,
    policy.defaultCpu,
    cpuMillis,
    HARD_LIMITS.minCpuMillis,
    policy.maxCpu,
  );
  const memory = validateQuantity(
    'limits.memory',
    limits.memory,
    policy.defaultMemory,
    bytes,
    HARD_LIMITS.minMemoryBytes,
    policy.maxMemory,
  );
  const request: ExecutionRequest = {
    code: i.code,
    language,
    timeoutSeconds: timeout,
    files: validateFiles(i.files),
    cpu,
    memory,
    env: validateEnv(i.env),
  };
  const network = checkNetwork(i.network, policy);
  if (network.error) fail(network.error.field, network.error.limit, network.error.message);
  if (network.rules) request.egress = network.rules;
  const jsonBytes = utf8Length(JSON.stringify(request));
  if (jsonBytes > HARD_LIMITS.maxInputJsonBytes) {
    fail('input', `max ${kib(HARD_LIMITS.maxInputJsonBytes)} serialized`, `serializes to ${kib(jsonBytes)}`);
  }
  return request;
}

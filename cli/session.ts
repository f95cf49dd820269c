/**
 * `durable-sandbox session open | run | list | close`: a durable session from a shell. A session outlives the command
 * that opened it, so these commands need a worker that stays: one already serving the task queue (`npm run worker`,
 * the Deployment in k8s/), else the background worker they start (cli/background-worker.ts), which stops by itself
 * once no session or execution of the queue is open. `--worker no` starts none: with none serving they say so
 * (exit 69) and start nothing.
 *
 *   S=$(durable-sandbox session open)
 *   durable-sandbox session run "$S" -e 'x = 6 * 7'
 *   durable-sandbox session run "$S" -e 'print(x)'        # 42
 *   durable-sandbox session close "$S"
 */
import { parseArgs } from 'node:util';
import {
  SessionClosedError,
  sessionRunNotes,
  type SandboxClient,
  type SessionOptions,
  type SessionRunResult,
} from '../client';
import { languageChoices, languageNamed } from '../core/languages';
import { EXIT } from './exit-codes';
import { exitCodeOf, inputFrom, networkLines, saveOutputFiles, showDisplays, UsageError } from './run';

const out = (line: string) => process.stdout.write(`${line}\n`);
const note = (line: string) => process.stderr.write(`[durable-sandbox] ${line}\n`);

export const SESSION_USAGE = `  durable-sandbox session open [--language L] [--timeout S] [--idle S] [--lifetime S] [--memory Q] [--cpu Q]
                               [--env K=V]... [--allow-net DOMAIN]... [--id ID] [--json] [--worker auto|no]
  durable-sandbox session run ID [FILE | - | -e CODE] [--timeout S] [--file PATH]... [--save-files DIR]
                               [--save-displays DIR] [--json]
                               [--worker auto|no]
  durable-sandbox session list [--json]
  durable-sandbox session state ID [--worker auto|no]
  durable-sandbox session fork ID [--at-run N] [--count N] [--json] [--worker auto|no]
  durable-sandbox session close ID [--worker auto|no]`;

function wholeSeconds(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new UsageError(`--${flag} takes whole seconds, not "${value}"`);
  return n;
}

/** Takes `--worker auto|no` out of a session command's arguments. */
function workerFlag(argv: string[]): { start: boolean; rest: string[] } {
  const rest: string[] = [];
  let value = 'auto';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--worker') value = argv[++i] ?? '';
    else if (a.startsWith('--worker=')) value = a.slice('--worker='.length);
    else rest.push(a);
  }
  if (value !== 'auto' && value !== 'no') throw new UsageError(`--worker: auto or no, not "${value}"`);
  return { start: value === 'auto', rest };
}

/**
 * Makes sure a worker that stays serves the task queue (the background worker, started when none does; with `start`
 * false, NoWorkerError when none does).
 */
export type EnsureWorker = (start: boolean) => Promise<unknown>;

/** A session still open needs a worker to carry out what is asked of it; a closed one needs none. */
async function ensureForSession(client: SandboxClient, id: string, ensure: EnsureWorker, start: boolean) {
  const d = await client.temporal.workflow
    .getHandle(id)
    .describe()
    .catch((err: unknown) => {
      if (err instanceof Error && err.name === 'WorkflowNotFoundError')
        throw new SessionClosedError(id, `there is no session ${id}`);
      throw err;
    });
  if (d.status.name === 'RUNNING') await ensure(start);
}

export async function sessionCommand(client: SandboxClient, argv: string[], ensure: EnsureWorker): Promise<number> {
  const [sub, ...args] = argv;
  try {
    const { start, rest } = workerFlag(args);
    switch (sub) {
      case 'open':
        await ensure(start);
        return await open(client, rest);
      case 'run':
        if (rest[0] && !rest[0].startsWith('-')) await ensureForSession(client, rest[0], ensure, start);
        return await runIn(client, rest);
      case 'list':
        return await list(client, rest);
      case 'state': {
        if (!rest[0]) throw new UsageError('session state needs a session id');
        await ensureForSession(client, rest[0], ensure, start);
        out(JSON.stringify(await client.getSession(rest[0]).state(), null, 2));
        return EXIT.ok;
      }
      case 'fork': {
        if (!rest[0] || rest[0].startsWith('-')) throw new UsageError('session fork needs a session id');
        await ensureForSession(client, rest[0], ensure, start);
        return await fork(client, rest[0], rest.slice(1));
      }
      case 'close': {
        if (!rest[0]) throw new UsageError('session close needs a session id');
        await ensureForSession(client, rest[0], ensure, start);
        const s = await client.getSession(rest[0]).close();
        out(`${s.sessionId}: closed (${s.closedBecause ?? 'closed'}) after ${s.runs} run(s); its pods are gone`);
        return EXIT.ok;
      }
      default:
        throw new UsageError(
          sub ? `unknown session command "${sub}"` : 'session needs a command: open, run, list, state, fork, close',
        );
    }
  } catch (err) {
    if (err instanceof SessionClosedError) {
      process.stderr.write(`durable-sandbox: ${err.message}\n`);
      return EXIT.noSession;
    }
    if (err instanceof Error && err.name === 'NoWorkerError') {
      process.stderr.write(`durable-sandbox: ${err.message}\n`);
      return EXIT.unavailable;
    }
    if (err instanceof Error && err.name === 'WorkflowNotFoundError') {
      process.stderr.write(`durable-sandbox: no such session\n`);
      return EXIT.noSession;
    }
    throw err;
  }
}

/** New sessions with the state of this one as of a run: their ids, one per line (or JSON). */
async function fork(client: SandboxClient, id: string, argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { 'at-run': { type: 'string' }, count: { type: 'string' }, json: { type: 'boolean', default: false } },
    allowPositionals: false,
  });
  const whole = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${flag} takes a whole number, not "${v}"`);
    return n;
  };
  const atRun = whole('at-run', values['at-run']);
  const count = whole('count', values.count);
  const forks = await client
    .getSession(id)
    .fork({ ...(atRun !== undefined ? { atRun } : {}), ...(count !== undefined ? { count } : {}) });
  if (values.json) out(JSON.stringify({ forkedFrom: id, atRun: atRun ?? 'last', sessions: forks.map((f) => f.id) }));
  else for (const f of forks) out(f.id);
  note(
    `${forks.length} fork(s) of ${id}${atRun !== undefined ? ` as of run ${atRun}` : ''}; each is a session of its own (close it with \`durable-sandbox session close ID\`)`,
  );
  return EXIT.ok;
}

async function open(client: SandboxClient, argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      language: { type: 'string' },
      timeout: { type: 'string' },
      idle: { type: 'string' },
      lifetime: { type: 'string' },
      memory: { type: 'string' },
      cpu: { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
      'allow-net': { type: 'string', multiple: true, default: [] },
      id: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const language = values.language === undefined ? undefined : languageNamed(values.language);
  if (values.language !== undefined && !language)
    throw new UsageError(`--language: ${languageChoices()}, not "${values.language}"`);
  const env = inputFrom({ code: '', files: [], env: values.env, json: false, timeline: false }).env;
  const timeoutSeconds = wholeSeconds('timeout', values.timeout);
  const idleTimeoutSeconds = wholeSeconds('idle', values.idle);
  const maxLifetimeSeconds = wholeSeconds('lifetime', values.lifetime);
  const options: SessionOptions & { sessionId?: string } = {
    ...(language ? { language } : {}),
    ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}),
    ...(idleTimeoutSeconds !== undefined ? { idleTimeoutSeconds } : {}),
    ...(maxLifetimeSeconds !== undefined ? { maxLifetimeSeconds } : {}),
    ...(values.memory || values.cpu
      ? { limits: { ...(values.memory ? { memory: values.memory } : {}), ...(values.cpu ? { cpu: values.cpu } : {}) } }
      : {}),
    ...(env ? { env } : {}),
    ...(values['allow-net'].length ? { network: { allow: values['allow-net'] } } : {}),
    ...(values.id ? { sessionId: values.id } : {}),
  };
  const session = await client.openSession(options);
  if (values.json) out(JSON.stringify(await session.state(), null, 2));
  else out(session.id);
  return EXIT.ok;
}

async function runIn(client: SandboxClient, argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      eval: { type: 'string', short: 'e' },
      timeout: { type: 'string' },
      file: { type: 'string', multiple: true, default: [] },
      'save-files': { type: 'string' },
      'save-displays': { type: 'string' },
      json: { type: 'boolean', default: false },
    },
  });
  const [sessionId, file] = positionals;
  if (!sessionId) throw new UsageError('session run needs a session id');
  const input = inputFrom({
    ...(values.eval !== undefined ? { code: values.eval } : {}),
    ...(file !== undefined ? { file } : {}),
    ...(values.timeout !== undefined ? { timeout: values.timeout } : {}),
    files: values.file,
    env: [],
    json: values.json,
    timeline: false,
  });
  const session = client.getSession(sessionId);
  // Ctrl-C stops waiting; the run itself goes on in the session (until it ends or its time limit).
  let stopped: () => void = () => undefined;
  const interrupted = new Promise<'interrupted'>((resolve) => (stopped = () => resolve('interrupted')));
  process.once('SIGINT', stopped);
  try {
    const r = await Promise.race([
      session.run(input.code, {
        ...(input.timeoutSeconds !== undefined ? { timeoutSeconds: input.timeoutSeconds } : {}),
        ...(input.files ? { files: input.files } : {}),
        // The run's output as it comes (the rest when the result is in); --json prints the result alone.
        ...(values.json
          ? {}
          : { onStdout: (t: string) => process.stdout.write(t), onStderr: (t: string) => process.stderr.write(t) }),
      }),
      interrupted,
    ]);
    if (r === 'interrupted') {
      note(
        `stopped waiting: the run goes on in session ${sessionId} until it ends or reaches its time limit; ` +
          `\`durable-sandbox session close ${sessionId}\` ends the session`,
      );
      return EXIT.cancelled;
    }
    show(r, values.json, values['save-files'], values['save-displays']);
    return exitCodeOf(r);
  } finally {
    process.off('SIGINT', stopped);
  }
}

function show(r: SessionRunResult, json: boolean, saveFiles: string | undefined, saveDisplays?: string): void {
  const saved = saveFiles ? saveOutputFiles(r.outputFiles, saveFiles) : [];
  if (json) {
    out(JSON.stringify(r, null, 2));
    return;
  }
  showDisplays(r, saveDisplays);
  // The output itself went out as it came.
  for (const n of sessionRunNotes(r)) note(n);
  for (const line of networkLines(r)) note(line.trim());
  if (r.status !== 'succeeded')
    note(
      `run ${r.seq}: ${r.status}${r.exitCode !== null ? ` (exit ${r.exitCode})` : ''}${r.error ? `: ${r.error.reason}: ${r.error.message}` : ''}`,
    );
  for (const f of r.outputFiles)
    note(
      `output file ${f.name} (${f.sizeBytes} bytes, ${f.mimeType})${saved.includes(f.name) ? ` -> ${saveFiles}/${f.name}` : ''}`,
    );
}

/** Open sessions, newest first, with what each says of itself when a worker answers. */
async function list(client: SandboxClient, argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } } });
  const rows: { sessionId: string; opened: string; runs?: number; pod?: string; language?: string }[] = [];
  for await (const w of client.temporal.workflow.list({
    query: `WorkflowType = 'session' AND ExecutionStatus = 'Running'`,
  })) {
    const state = await client.temporal
      .withDeadline(Date.now() + 3000, () => client.getSession(w.workflowId).state())
      .catch(() => undefined);
    rows.push({
      sessionId: w.workflowId,
      opened: w.startTime.toISOString(),
      ...(state ? { runs: state.runs, language: state.language, ...(state.pod ? { pod: state.pod } : {}) } : {}),
    });
  }
  if (values.json) out(JSON.stringify(rows, null, 2));
  else {
    for (const r of rows)
      out(
        `${r.opened}  ${(r.language ?? '?').padEnd(7)} ${String(r.runs ?? '?').padStart(4)} run(s)  ${r.sessionId}  ${r.pod ?? '(no pod now)'}`,
      );
    if (!rows.length) out('no open sessions');
  }
  return EXIT.ok;
}

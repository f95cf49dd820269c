/** Runs the real worker as a child process and restarts it whenever it dies, so the harness can SIGKILL it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT } from '../../cli/local-stack';

export class WorkerSupervisor {
  private child?: ChildProcess;
  private stopping = false;
  restarts = 0;
  kills = 0;
  private readonly log;

  constructor(
    private env: NodeJS.ProcessEnv,
    logFile: string,
  ) {
    this.log = createWriteStream(logFile, { flags: 'a' });
  }

  start(): void {
    if (this.stopping) return;
    const child = spawn(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', path.join(PROJECT_ROOT, 'worker', 'main.ts')],
      {
        cwd: PROJECT_ROOT,
        env: this.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stdout.pipe(this.log, { end: false });
    child.stderr.pipe(this.log, { end: false });
    child.on('exit', () => {
      if (this.child === child) this.child = undefined;
      if (!this.stopping) {
        this.restarts++;
        setTimeout(() => this.start(), 200);
      }
    });
    this.child = child;
  }

  /** Replaces the worker by one started with these settings; returns once the old process has exited. */
  async restartWith(overrides: NodeJS.ProcessEnv): Promise<void> {
    this.env = { ...this.env, ...overrides };
    const child = this.child;
    if (!child?.pid || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
    child.kill('SIGKILL');
    await exited;
  }

  /** The worker process running now, if one is. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** SIGKILL, as a crash: no graceful shutdown, no heartbeat, nothing flushed. */
  kill(): boolean {
    if (!this.child?.pid) return false;
    this.kills++;
    this.child.kill('SIGKILL');
    return true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (child?.pid) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      child.kill('SIGKILL');
    }
    this.log.end();
  }
}

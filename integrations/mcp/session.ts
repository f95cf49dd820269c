/**
 * The session of one MCP connection: opened by its first call in a language that keeps an interpreter, used by every
 * such call after it, closed when the connection ends or the model asks (reset_session). A call's cancellation stops
 * its run by ending the session (a session run cannot be stopped alone); the next call opens a fresh one and says so.
 */
import {
  SessionClosedError,
  sessionRunNotes,
  type Session,
  type SessionOptions,
  type SessionRunInput,
  type SessionRunResult,
} from '../../client';
import type { SandboxClientLike } from './server';

export class ConnectionSession {
  private current: Promise<Session> | undefined;
  /** What the next run should say of the session before it (it was cancelled, or had ended). */
  private previous: string | undefined;

  constructor(
    private readonly client: SandboxClientLike,
    private readonly log: (msg: string) => void,
    private readonly options: Pick<
      SessionOptions,
      'idleTimeoutSeconds' | 'maxLifetimeSeconds' | 'language' | 'network'
    > = {},
    private readonly closeTimeoutMs = 15_000,
  ) {}

  private open(): Promise<Session> {
    if (!this.current) {
      const opening = this.client.openSession(this.options);
      this.current = opening;
      opening.then(
        (s) => this.log(`session ${s.id}: opened`),
        () => {
          if (this.current === opening) this.current = undefined;
        },
      );
    }
    return this.current;
  }

  /** Runs in the connection's session (opening it if need be); `stop` ends the session, and with it the run. */
  async run(
    input: SessionRunInput,
    stop: AbortSignal,
    onSession: (sessionId: string) => void,
  ): Promise<{ result: SessionRunResult; notes: string[] }> {
    const notes: string[] = [];
    if (this.previous) notes.push(this.previous);
    this.previous = undefined;
    for (let tries = 0; ; tries++) {
      const session = await this.open();
      onSession(session.id);
      const onStop = (): void => void this.end(session, 'cancel', `the call was cancelled (${String(stop.reason)})`);
      stop.addEventListener('abort', onStop, { once: true });
      try {
        const { code, ...rest } = input;
        const result = await session.run(code, rest);
        return { result, notes: [...notes, ...sessionRunNotes(result)] };
      } catch (err) {
        // Ended under us (its lifetime, or closed from elsewhere): once, a fresh session, and the model told.
        if (err instanceof SessionClosedError && !stop.aborted && tries === 0) {
          if (this.current && (await this.current.catch(() => undefined)) === session) this.current = undefined;
          notes.push(`[session ${session.id} had ended; this ran in a new session, without its state]`);
          continue;
        }
        throw err;
      } finally {
        stop.removeEventListener('abort', onStop);
      }
    }
  }

  /** Closes the session, if one is open: resolves with its id (undefined when none was). */
  async close(why: string): Promise<string | undefined> {
    const current = this.current;
    if (!current) return undefined;
    const session = await current.catch(() => undefined);
    if (!session) return undefined;
    await this.end(session, 'close', why);
    return session.id;
  }

  private async end(session: Session, how: 'close' | 'cancel', why: string): Promise<void> {
    if (this.current && (await this.current.catch(() => undefined)) === session) this.current = undefined;
    if (how === 'cancel')
      this.previous = `[the previous session (${session.id}) was closed when a call was cancelled: this is a fresh interpreter]`;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), this.closeTimeoutMs)));
    try {
      // Handed to the session's workflow, which ends it even if this process exits right after.
      const asked = how === 'cancel' ? session.cancel({ wait: false }) : session.close({ wait: false });
      const ended = await Promise.race([asked, late]);
      this.log(
        ended === 'late'
          ? `session ${session.id}: no answer to ${how} after ${this.closeTimeoutMs} ms (${why})`
          : `session ${session.id}: ${how === 'cancel' ? 'cancelled' : 'closing'} (${why})`,
      );
    } catch (err) {
      this.log(
        `session ${session.id}: could not close it (${why}): ${err instanceof Error ? err.message : String(err)}`,
      );
    } finally {
      clearTimeout(timer);
    }
  }
}

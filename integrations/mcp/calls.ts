/**
 * The run_code calls in flight on one MCP connection (a stdio server, an HTTP session): so a transport can stop
 * them (its client went away) and wait for them to wind down (each one's execution cancelled) before it closes, and
 * so an HTTP session counts as busy while one runs.
 */
export class CallTracker {
  private readonly calls = new Map<string, { abort: (reason: string) => void; done: Promise<void> }>();

  /** Calls in flight. */
  get size(): number {
    return this.calls.size;
  }

  /** Registers a call under its JSON-RPC request id; returns what marks it finished. */
  add(requestId: string | number, abort: (reason: string) => void): () => void {
    const key = String(requestId);
    let finish!: () => void;
    const entry = { abort, done: new Promise<void>((resolve) => (finish = resolve)) };
    this.calls.set(key, entry);
    return () => {
      if (this.calls.get(key) === entry) this.calls.delete(key);
      finish();
    };
  }

  /** Stops one call (its execution is cancelled); false when no such call is in flight. */
  abort(requestId: string | number, reason: string): boolean {
    const entry = this.calls.get(String(requestId));
    entry?.abort(reason);
    return entry !== undefined;
  }

  abortAll(reason: string): void {
    for (const entry of this.calls.values()) entry.abort(reason);
  }

  /** Waits until no call is in flight, or `timeoutMs` passed; true when none is. */
  async drain(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      while (this.calls.size > 0) {
        const all = Promise.all([...this.calls.values()].map((c) => c.done)).then(() => true as const);
        if (!(await Promise.race([all, timeout]))) return false;
      }
      return true;
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * The MCP server over stdio: JSON-RPC on stdin/stdout, for an MCP client that spawns `durable-sandbox mcp`.
 *
 * stdout carries MCP messages only: diagnostics go to stderr, and while serving on the process's own stdout,
 * console.log/info/debug are sent to stderr as well (so a stray log line cannot break the protocol).
 *
 * Shutdown: when stdin ends (the client closed it or exited) or `close()` is called, the calls in flight are stopped
 * and their executions cancelled, then `closed` resolves. The caller (the CLI) then closes its SandboxClient and
 * exits. It should call `close()` on SIGTERM/SIGINT too: the SDK's stdio client closes stdin, then sends SIGTERM two
 * seconds later.
 */
import type { Readable, Writable } from 'node:stream';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { CallTracker } from './calls';
import { createMcpServer, stderrLog, type CreateMcpServerOptions } from './server';

export interface ServeStdioOptions extends Omit<CreateMcpServerOptions, 'calls'> {
  /** Default: process.stdin / process.stdout. */
  stdin?: Readable;
  stdout?: Writable;
  /** How long `close()` waits for cancelled calls to wind down. Default 10 s. */
  drainTimeoutMs?: number;
}

export interface StdioServer {
  /** Resolves once the server has closed (stdin ended, or close()) and its calls have wound down. */
  closed: Promise<void>;
  close(): Promise<void>;
}

type ConsoleMethod = 'log' | 'info' | 'debug';

export async function serveStdio(options: ServeStdioOptions): Promise<StdioServer> {
  const log = options.log ?? stderrLog;
  const stdin = options.stdin ?? process.stdin;
  const stdout = options.stdout ?? process.stdout;
  const calls = new CallTracker();
  const server = createMcpServer({ ...options, log, calls });
  const transport = new StdioServerTransport(stdin, stdout);

  const saved = new Map<ConsoleMethod, (...args: unknown[]) => void>();
  if (stdout === process.stdout) {
    for (const m of ['log', 'info', 'debug'] as ConsoleMethod[]) {
      // eslint-disable-next-line @typescript-eslint/unbound-method -- put back on console itself in close()
      saved.set(m, console[m]);
      console[m] = (...args: unknown[]) => console.error(...args);
    }
  }

  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));
  let closing = false;
  const close = async (): Promise<void> => {
    if (closing) return closed;
    closing = true;
    stdin.off('end', onEnd);
    stdin.off('close', onEnd);
    // Closing the connection aborts every handler's signal: each cancels its execution.
    calls.abortAll('the MCP server is closing');
    await server.close().catch((err: unknown) => log(`closing: ${String(err)}`));
    if (!(await calls.drain(options.drainTimeoutMs ?? 10_000)))
      log(`closing: ${calls.size} call(s) still winding down`);
    for (const [m, fn] of saved) console[m] = fn;
    markClosed();
    return closed;
  };
  const onEnd = (): void => {
    void close();
  };
  // Set before connect(), so the SDK chains its own handler after it.
  transport.onclose = onEnd;
  await server.connect(transport);
  stdin.once('end', onEnd);
  stdin.once('close', onEnd);
  log('serving MCP on stdio');
  return { closed, close };
}

/**
 * The MCP server over Streamable HTTP (plain node:http), at `http://<host>:<port>/mcp`.
 *
 * - Stateful sessions: one McpServer and transport per session (`mcp-session-id`), so a client's
 *   `notifications/cancelled` reaches the call it cancels (stateless mode cannot cancel anything).
 * - Bound to 127.0.0.1 unless `host` says otherwise. The Host header must name this machine (localhost, 127.0.0.1,
 *   [::1], the bound address) or one of `allowedHosts`, whatever the port: anything else gets 403 before any
 *   session is made (DNS rebinding). A request with an Origin header naming another host gets 403 too (a web page
 *   elsewhere posting to the local server). Bound to all interfaces (0.0.0.0, ::), remote clients need their name
 *   in `allowedHosts`.
 * - Sessions end on DELETE (the client's terminateSession), on close(), or after `idleTimeoutMs` with no request and
 *   no open stream and no call in flight (a client that went away without DELETE). Ending a session stops its calls
 *   and cancels their executions; so does a client dropping the connection of a call that has not answered yet.
 */
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { CallTracker } from './calls';
import { createMcpServer, stderrLog, type CreateMcpServerOptions } from './server';

export interface ServeHttpOptions extends Omit<CreateMcpServerOptions, 'calls'> {
  /** 0: any free port (see `url`). */
  port: number;
  /** Address to bind. Default 127.0.0.1. */
  host?: string;
  /** Default '/mcp'. */
  path?: string;
  /** More host names (no port) the Host header may carry, e.g. the name remote clients use. */
  allowedHosts?: string[];
  /** A session with no request, no open stream and no call in flight for this long is closed. Default 30 min. */
  idleTimeoutMs?: number;
  /** Sessions at most; a new one beyond gets 503. Default 100. */
  maxSessions?: number;
  /** Largest request body. Default 4 MiB. */
  maxBodyBytes?: number;
  /** How long close() waits for cancelled calls to wind down. Default 10 s. */
  drainTimeoutMs?: number;
}

export interface HttpServer {
  /** The MCP endpoint, e.g. http://127.0.0.1:3000/mcp. */
  url: string;
  port: number;
  /** Sessions open now. */
  sessionCount(): number;
  /** Ends every session (cancelling the executions of calls in flight) and stops listening. */
  close(): Promise<void>;
}

interface Session {
  id?: string;
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  calls: CallTracker;
  lastSeen: number;
  openRequests: number;
  closing?: Promise<void>;
}

const LOCAL_NAMES = ['localhost', '127.0.0.1', '[::1]'];
const WILDCARD = new Set(['0.0.0.0', '::', '[::]', '']);

/** A host name as URL.hostname writes it: lower case, IPv6 in brackets. */
function normalizeHostname(name: string): string {
  const n = name.trim().toLowerCase();
  return n.includes(':') && !n.startsWith('[') ? `[${n}]` : n;
}

function hostnameOf(value: string): string | undefined {
  try {
    return new URL(`http://${value}`).hostname;
  } catch {
    return undefined;
  }
}

function jsonRpcError(
  res: http.ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readJson(req: http.IncomingMessage, limit: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= limit) chunks.push(c);
    });
    req.on('end', () => {
      if (size > limit) return reject(new HttpError(413, `Request body larger than ${limit} bytes`));
      try {
        const s = Buffer.concat(chunks).toString('utf8');
        resolve(s ? JSON.parse(s) : undefined);
      } catch {
        reject(new HttpError(400, 'Parse error: the body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

/** The ids of the tools/call requests in a POST body (one message, or a batch). */
function toolCallIds(body: unknown): (string | number)[] {
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  const ids: (string | number)[] = [];
  for (const m of messages) {
    if (typeof m !== 'object' || m === null) continue;
    const { method, id } = m as { method?: unknown; id?: unknown };
    if (method === 'tools/call' && (typeof id === 'string' || typeof id === 'number')) ids.push(id);
  }
  return ids;
}

export async function serveHttp(options: ServeHttpOptions): Promise<HttpServer> {
  const log = options.log ?? stderrLog;
  const host = options.host ?? '127.0.0.1';
  const path = options.path ?? '/mcp';
  const idleTimeoutMs = options.idleTimeoutMs ?? 30 * 60_000;
  const maxSessions = options.maxSessions ?? 100;
  const maxBodyBytes = options.maxBodyBytes ?? 4 * 1024 * 1024;
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;

  const allowed = new Set([...LOCAL_NAMES, ...(options.allowedHosts ?? []).map(normalizeHostname)]);
  if (!WILDCARD.has(host)) allowed.add(normalizeHostname(host));
  else if (!options.allowedHosts?.length) {
    log(
      `bound to ${host}: only requests naming localhost, 127.0.0.1 or [::1] in their Host header are served (see allowedHosts)`,
    );
  }
  const hostAllowed = (value: string | undefined): boolean => {
    const name = value ? hostnameOf(value) : undefined;
    return name !== undefined && allowed.has(name);
  };
  const originAllowed = (origin: string | undefined): boolean => {
    if (origin === undefined) return true;
    try {
      return allowed.has(new URL(origin).hostname);
    } catch {
      return false;
    }
  };

  const sessions = new Map<string, Session>();
  let closingAll = false;

  const closeSession = (s: Session, why: string): Promise<void> => {
    if (s.closing) return s.closing;
    let done!: () => void;
    s.closing = new Promise<void>((resolve) => (done = resolve));
    if (s.id) sessions.delete(s.id);
    log(`session ${s.id ?? '(uninitialized)'}: closing (${why})`);
    void (async () => {
      // Closing the transport aborts every handler's signal too: each call cancels its execution.
      s.calls.abortAll(`session closed: ${why}`);
      await s.transport.close().catch(() => undefined);
      await s.server.close().catch(() => undefined);
      if (!(await s.calls.drain(drainTimeoutMs))) log(`session ${s.id}: ${s.calls.size} call(s) still winding down`);
    })().finally(done);
    return s.closing;
  };

  const newSession = async (): Promise<Session> => {
    const calls = new CallTracker();
    const server = createMcpServer({ ...options, log, calls });
    const session = { calls, server, lastSeen: Date.now(), openRequests: 0 } as Session;
    session.transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        session.id = id;
        sessions.set(id, session);
      },
    });
    // Set before connect(), so the SDK chains its own handler after it. Runs on DELETE and on close.
    session.transport.onclose = () => {
      void closeSession(session, 'transport closed');
    };
    session.transport.onerror = (err) => log(`session ${session.id ?? '(new)'}: ${err.message}`);
    await server.connect(session.transport);
    return session;
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    if (!hostAllowed(req.headers.host)) return jsonRpcError(res, 403, `Invalid Host: ${req.headers.host ?? '(none)'}`);
    const origin = req.headers.origin;
    if (!originAllowed(origin)) return jsonRpcError(res, 403, `Invalid Origin: ${origin}`);
    if (new URL(req.url ?? '/', 'http://localhost').pathname !== path) return jsonRpcError(res, 404, 'Not found');
    if (req.method !== 'POST' && req.method !== 'GET' && req.method !== 'DELETE') {
      return jsonRpcError(res, 405, 'Method not allowed', { allow: 'GET, POST, DELETE' });
    }
    if (closingAll) return jsonRpcError(res, 503, 'Server is shutting down');

    const header = req.headers['mcp-session-id'];
    const sessionId = Array.isArray(header) ? header[0] : header;
    const body = req.method === 'POST' ? await readJson(req, maxBodyBytes) : undefined;
    let session = sessionId ? sessions.get(sessionId) : undefined;
    if (!session) {
      if (sessionId) return jsonRpcError(res, 404, 'Session not found');
      if (req.method !== 'POST' || !isInitializeRequest(body))
        return jsonRpcError(res, 400, 'Bad Request: No valid session ID provided');
      if (sessions.size >= maxSessions) return jsonRpcError(res, 503, `Too many sessions (${maxSessions})`);
      session = await newSession();
    }

    const s = session;
    s.lastSeen = Date.now();
    s.openRequests++;
    const calls = toolCallIds(body);
    res.on('close', () => {
      s.openRequests--;
      s.lastSeen = Date.now();
      // The client dropped the connection before the answer: nobody is waiting for these calls any more.
      if (res.writableFinished) return;
      for (const id of calls) {
        if (s.calls.abort(id, 'the client disconnected')) log(`session ${s.id}: call ${id} dropped by the client`);
      }
    });
    await s.transport.handleRequest(req, res, body);
    // An initialize the transport refused leaves a session that never got an id: drop it.
    if (!s.id) await closeSession(s, 'not initialized');
  };

  const httpServer = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) return jsonRpcError(res, err.status, err.message);
      log(`request failed: ${String(err)}`);
      jsonRpcError(res, 500, 'Internal server error');
    });
  });

  const sweep = setInterval(
    () => {
      const now = Date.now();
      for (const s of sessions.values()) {
        if (s.openRequests === 0 && s.calls.size === 0 && now - s.lastSeen > idleTimeoutMs)
          void closeSession(s, `idle for ${idleTimeoutMs} ms`);
      }
    },
    Math.max(100, Math.min(Math.floor(idleTimeoutMs / 4), 60_000)),
  );
  sweep.unref();

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port, host, () => {
      httpServer.off('error', reject);
      resolve();
    });
  }).catch((err: unknown) => {
    clearInterval(sweep);
    throw err;
  });
  const port = (httpServer.address() as AddressInfo).port;
  const urlHost =
    host === '0.0.0.0' || host === ''
      ? '127.0.0.1'
      : host === '::' || host === '[::]'
        ? '[::1]'
        : normalizeHostname(host);
  const url = `http://${urlHost}:${port}${path}`;
  log(`serving MCP (Streamable HTTP) at ${url}`);

  let closed: Promise<void> | undefined;
  return {
    url,
    port,
    sessionCount: () => sessions.size,
    close() {
      closed ??= (async () => {
        closingAll = true;
        clearInterval(sweep);
        await Promise.all([...sessions.values()].map((s) => closeSession(s, 'server closing')));
        httpServer.closeAllConnections();
        await new Promise<void>((resolve) => httpServer.close(() => resolve()));
      })();
      return closed;
    },
  };
}

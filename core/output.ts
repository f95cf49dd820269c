/**
 * Turns the launcher's pod log back into separate, capped stdout and stderr plus its trailer. The log is read
 * with a byte limit and every frame is capped again here, so nothing a program prints (or forges) can make a
 * result larger than the caps.
 */
import type { StreamOutput } from './types';

export const LAUNCHER_FORMAT = 'durable-sandbox-launcher 1';

export interface LauncherTrailer {
  exitCode: number;
  signal: number | null;
  timedOut: boolean;
  terminated: boolean;
  stdoutBytes: number;
  stderrBytes: number;
  startedAt: number;
  finishedAt: number;
  error: string | null;
}

export interface ParsedOutput {
  stdout: StreamOutput;
  stderr: StreamOutput;
  trailer: LauncherTrailer | null;
  /** False when the log did not come from the launcher at all (e.g. it never started). */
  launcherSeen: boolean;
}

export interface Caps {
  stdoutCapBytes: number;
  stderrCapBytes: number;
}

/** Bytes of pod log to read at most: every captured byte base64-encoded, plus framing and the trailer. */
export function logReadLimit(caps: Caps): number {
  const payload = caps.stdoutCapBytes + caps.stderrCapBytes;
  return Math.ceil((payload * 4) / 3) + Math.ceil(payload / 8192 + 2) * 4 + 4096;
}

class Collector {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  seen = 0;
  constructor(private readonly cap: number) {}
  add(data: Buffer): void {
    this.seen += data.length;
    const room = this.cap - this.kept;
    if (room <= 0) return;
    const part = data.subarray(0, room);
    this.chunks.push(part);
    this.kept += part.length;
  }
  result(total: number | undefined, cutShort: boolean): StreamOutput {
    const buf = Buffer.concat(this.chunks);
    const totalBytes = Math.max(total ?? this.seen, this.kept);
    return {
      text: new TextDecoder('utf-8', { fatal: false }).decode(buf),
      totalBytes,
      capturedBytes: this.kept,
      truncated: cutShort || totalBytes > this.kept,
    };
  }
}

function parseTrailer(json: string): LauncherTrailer | null {
  try {
    const t = JSON.parse(json) as Partial<LauncherTrailer>;
    if (typeof t.exitCode !== 'number' || typeof t.stdoutBytes !== 'number' || typeof t.stderrBytes !== 'number') {
      return null;
    }
    return {
      exitCode: t.exitCode,
      signal: typeof t.signal === 'number' ? t.signal : null,
      timedOut: t.timedOut === true,
      terminated: t.terminated === true,
      stdoutBytes: t.stdoutBytes,
      stderrBytes: t.stderrBytes,
      startedAt: Number(t.startedAt) || 0,
      finishedAt: Number(t.finishedAt) || 0,
      error: typeof t.error === 'string' ? t.error : null,
    };
  } catch {
    return null;
  }
}

/**
 * Parses a launcher log. `complete` is false when the log was cut at the read limit: the streams are then
 * flagged truncated even if the trailer is missing.
 */
export function parseLauncherLog(log: string, caps: Caps, complete = true): ParsedOutput {
  const out = new Collector(caps.stdoutCapBytes);
  const err = new Collector(caps.stderrCapBytes);
  let trailer: LauncherTrailer | null = null;
  let launcherSeen = false;
  for (const line of log.split('\n')) {
    if (line === LAUNCHER_FORMAT) {
      launcherSeen = true;
      continue;
    }
    const tag = line.slice(0, 2);
    if (tag === 'o ' || tag === 'e ') {
      (tag === 'o ' ? out : err).add(Buffer.from(line.slice(2), 'base64'));
    } else if (tag === 'x ') {
      trailer = parseTrailer(line.slice(2)) ?? trailer;
    }
  }
  const cutShort = !complete || trailer === null;
  return {
    stdout: out.result(trailer?.stdoutBytes, cutShort),
    stderr: err.result(trailer?.stderrBytes, cutShort),
    trailer,
    launcherSeen,
  };
}

export function emptyStream(): StreamOutput {
  return { text: '', totalBytes: 0, capturedBytes: 0, truncated: false };
}

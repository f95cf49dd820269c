/**
 * Turns the launcher's pod log back into separate, capped stdout and stderr plus its trailer, incrementally: the
 * run step feeds it the log as it streams, so memory stays bounded whatever the program prints, and the text decoded
 * so far is available at any moment (live output). Every frame is capped again here, so nothing a program prints
 * (or forges) can make a result larger than the caps.
 */
import type { CollectedOutput } from './attempt';
import type { Caps } from './policy';
export { capsOf } from './policy';
import type { LiveOutput, MimeBundle, OutputFile, OutputTail, StreamOutput } from './types';

import {
  LAUNCHER_FORMAT,
  TAG,
  type LauncherAcceptance,
  type LauncherCheckpoint,
  type LauncherSessionNote,
  type LauncherTrailer,
  type StateReport,
} from './launcher-protocol';
export { LAUNCHER_FORMAT, type LauncherAcceptance, type LauncherTrailer };
/** The longest line a launcher writes is a frame of 8 KiB (about 11 KB of base64): anything longer is not ours. */
const MAX_LINE_CHARS = 64 * 1024;
/** Characters of each stream that live output (heartbeats, getExecution) carries: the newest ones. */
export const LIVE_TAIL_CHARS = 16 * 1024;

export interface ParsedOutput {
  stdout: StreamOutput;
  stderr: StreamOutput;
  /** Files the program left under /sandbox/out, as the launcher sent them (capped again here). */
  files: OutputFile[];
  /** Display data the launcher sent (capped again here), and how many the program made in all. */
  displays: MimeBundle[];
  displaysTotal: number;
  trailer: LauncherTrailer | null;
  /** False when the log did not come from the launcher at all (e.g. it never started). */
  launcherSeen: boolean;
}

export type { Caps };

/** Bytes of pod log to read at most: every captured byte base64-encoded, plus framing, file headers and the trailer. */
export function logReadLimit(caps: Caps): number {
  const payload = caps.stdoutCapBytes + caps.stderrCapBytes + (caps.outputFilesCapBytes ?? 0);
  return (
    Math.ceil((payload * 4) / 3) + Math.ceil(payload / 8192 + 2) * 4 + (caps.outputFilesMaxCount ?? 0) * 4096 + 4096
  );
}

const MIME: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  svg: 'image/svg+xml',
  pdf: 'application/pdf',
  csv: 'text/csv',
  tsv: 'text/tab-separated-values',
  txt: 'text/plain',
  log: 'text/plain',
  md: 'text/markdown',
  html: 'text/html',
  json: 'application/json',
  xml: 'application/xml',
  yaml: 'application/yaml',
  yml: 'application/yaml',
  py: 'text/x-python',
  sh: 'text/x-shellscript',
  parquet: 'application/vnd.apache.parquet',
  zip: 'application/zip',
};

/** The MIME type of a file name, by its extension. */
export function mimeTypeOf(name: string): string {
  const ext = /\.([A-Za-z0-9]+)$/.exec(name)?.[1]?.toLowerCase();
  return (ext && MIME[ext]) || 'application/octet-stream';
}

const isText = (mime: string) =>
  mime.startsWith('text/') ||
  ['application/json', 'application/xml', 'application/yaml', 'image/svg+xml'].includes(mime);

/**
 * A name the result may carry: a relative path under /sandbox/out made of ordinary segments (no '..', no empty or
 * hidden-path tricks, no control characters), at most 255 characters.
 */
export function safeOutputName(name: string): boolean {
  if (!name || name.length > 255 || name.startsWith('/')) return false;
  // eslint-disable-next-line no-control-regex -- control characters are exactly what a file name must not hold
  if (/[\u0000-\u001f\u007f\\]/.test(name)) return false;
  return name.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

/** One output file as it arrives: its header, then its bytes in frames. */
class FileCollector {
  private readonly chunks: Uint8Array[] = [];
  kept = 0;
  cut = false;
  constructor(
    readonly name: string,
    readonly size: number,
    private readonly cap: number,
  ) {}

  add(data: Uint8Array, room: number): number {
    const take = Math.max(0, Math.min(data.length, this.cap - this.kept, room));
    if (take < data.length) this.cut = true;
    if (take > 0) {
      this.chunks.push(data.subarray(0, take));
      this.kept += take;
    }
    return take;
  }

  result(): OutputFile {
    const bytes = Buffer.concat(this.chunks);
    const mimeType = mimeTypeOf(this.name);
    let text: string | undefined;
    if (isText(mimeType)) {
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        text = undefined;
      }
    }
    return {
      name: this.name,
      sizeBytes: this.size,
      mimeType,
      encoding: text !== undefined ? 'utf8' : 'base64',
      content: text ?? bytes.toString('base64'),
      truncated: this.cut || this.kept < this.size,
    };
  }
}

/**
 * One stream: keeps at most `cap` bytes and decodes them as they come (UTF-8, invalid bytes replaced), so the text
 * decoded so far is always a prefix of the final text.
 */
class StreamCollector {
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });
  private text = '';
  private finished: string | undefined;
  private kept = 0;
  private seen = 0;
  constructor(private readonly cap: number) {}

  add(data: Uint8Array): void {
    this.seen += data.length;
    const room = this.cap - this.kept;
    if (room <= 0 || this.finished !== undefined) return;
    const part = data.subarray(0, room);
    this.kept += part.length;
    this.text += this.decoder.decode(part, { stream: true });
  }

  tail(chars: number): OutputTail {
    return { text: this.text.slice(-chars), end: this.text.length };
  }

  result(total: number | undefined, cutShort: boolean): StreamOutput {
    this.finished ??= this.text + this.decoder.decode();
    const totalBytes = Math.max(total ?? this.seen, this.kept);
    return {
      text: this.finished,
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
      ...(typeof t.displays === 'number' ? { displays: t.displays } : {}),
      ...(typeof t.displaysDropped === 'number' ? { displaysDropped: t.displaysDropped } : {}),
    };
  } catch {
    return null;
  }
}

function parseAcceptance(json: string): LauncherAcceptance | null {
  try {
    const a = JSON.parse(json) as Partial<LauncherAcceptance>;
    if (typeof a.executionId !== 'string' || typeof a.attempt !== 'number' || typeof a.sha256 !== 'string') return null;
    return {
      executionId: a.executionId,
      attempt: a.attempt,
      sha256: a.sha256,
      ...(typeof a.seq === 'number' ? { seq: a.seq } : {}),
    };
  } catch {
    return null;
  }
}

function workspaceOf(w: unknown): LauncherSessionNote['workspace'] {
  const v = w as LauncherSessionNote['workspace'];
  if (!v || typeof v !== 'object' || typeof v.entries !== 'number' || typeof v.bytes !== 'number') return undefined;
  return {
    sig: typeof v.sig === 'string' ? v.sig : null,
    entries: v.entries,
    bytes: v.bytes,
    ...(typeof v.base === 'string' ? { base: v.base } : {}),
  };
}

function parseSessionNote(json: string): LauncherSessionNote | null {
  try {
    const n = JSON.parse(json) as Partial<LauncherSessionNote>;
    if (typeof n.seq !== 'number' || !['started', 'kept', 'restarted'].includes(n.interpreter as string)) return null;
    return {
      seq: n.seq,
      interpreter: n.interpreter!,
      why: n.why ?? null,
      next: n.next === 'restart' ? 'restart' : 'keep',
      ...(workspaceOf(n.workspace) ? { workspace: workspaceOf(n.workspace) } : {}),
      ...(n.leftover && typeof n.leftover.bytes === 'number'
        ? { leftover: { bytes: n.leftover.bytes, text: String(n.leftover.text ?? '') } }
        : {}),
      ...(stateReportOf(n.state) ? { state: stateReportOf(n.state) } : {}),
      ...(n.replayed && typeof n.replayed.runs === 'number' ? { replayed: n.replayed } : {}),
    };
  } catch {
    return null;
  }
}

/** A kernel's account of a checkpoint or a restore, the fields it should have (anything else dropped). */
function stateReportOf(r: unknown): StateReport | undefined {
  if (!r || typeof r !== 'object') return undefined;
  const v = r as Record<string, unknown>;
  const out: StateReport = {};
  for (const k of ['sha', 'with', 'error'] as const) if (typeof v[k] === 'string') out[k] = v[k];
  for (const k of ['bytes', 'names', 'ms'] as const) if (typeof v[k] === 'number') out[k] = v[k];
  for (const k of ['changed', 'restored'] as const) if (typeof v[k] === 'boolean') out[k] = v[k];
  if (Array.isArray(v.skipped)) out.skipped = v.skipped.map(String);
  return out;
}

/** The `k` line of a session run (its checkpoint), from a piece of the launcher's log; the last one for `seq`. */
export function checkpointOf(log: string, seq: number): LauncherCheckpoint | undefined {
  let found: LauncherCheckpoint | undefined;
  for (const line of log.split('\n')) {
    if (!line.startsWith(`${TAG.checkpoint} `)) continue;
    try {
      const v = JSON.parse(line.slice(2)) as { seq?: unknown };
      if (v.seq === seq) found = { ...stateReportOf(v), seq };
    } catch {
      // a damaged line: not this one
    }
  }
  return found;
}

/** The most display data a heartbeat carries (the newest displays; the rest come with the result). */
export const LIVE_DISPLAY_BYTES = 192 * 1024;

/**
 * Parses a launcher log fed in pieces of any size. The launcher writes ASCII only (base64 frames, an ASCII JSON
 * trailer), so pieces are handled as latin1 text and a line split across pieces is joined.
 */
export class LauncherLogParser {
  private readonly out: StreamCollector;
  private readonly err: StreamCollector;
  private partial = '';
  /** The current line grew past MAX_LINE_CHARS: skip it up to its end. */
  private skipping = false;
  trailer: LauncherTrailer | null = null;
  accepted: LauncherAcceptance | null = null;
  /** Session: what the run ran in. */
  session: LauncherSessionNote | null = null;
  launcherSeen = false;
  /** Session: the run this parser reads; lines before its acceptance and after its trailer belong to other runs. */
  private readonly run: number | undefined;
  private inRun: boolean;
  private readonly files: FileCollector[] = [];
  private filesKept = 0;
  /** Display data: the bundles' JSON bytes as they come. */
  private readonly displayBlobs: { size: number; chunks: Uint8Array[]; kept: number }[] = [];
  private displaysKept = 0;
  /** Where `fileData` lines go: the last file announced, or the last display. */
  private blob: 'file' | 'display' = 'file';
  /** Log bytes consumed so far. */
  bytes = 0;

  constructor(
    private readonly caps: Caps,
    options: { run?: number } = {},
  ) {
    this.run = options.run;
    this.inRun = options.run === undefined;
    this.out = new StreamCollector(caps.stdoutCapBytes);
    this.err = new StreamCollector(caps.stderrCapBytes);
  }

  push(piece: string | Uint8Array): void {
    const text = typeof piece === 'string' ? piece : Buffer.from(piece).toString('latin1');
    this.bytes += typeof piece === 'string' ? Buffer.byteLength(piece, 'latin1') : piece.length;
    let from = 0;
    for (;;) {
      const nl = text.indexOf('\n', from);
      if (nl < 0) break;
      const rest = text.slice(from, nl);
      if (!this.skipping) this.line(this.partial + rest);
      this.partial = '';
      this.skipping = false;
      from = nl + 1;
    }
    if (this.skipping) return;
    this.partial += text.slice(from);
    if (this.partial.length > MAX_LINE_CHARS) {
      this.partial = '';
      this.skipping = true;
    }
  }

  private line(line: string): void {
    if (line === LAUNCHER_FORMAT) {
      this.launcherSeen = true;
      return;
    }
    if (line[1] !== ' ') return;
    const tag = line[0];
    if (!this.inRun) {
      // A session's log: this run starts at its acceptance, and ends at its trailer.
      if (tag !== TAG.accepted || this.trailer) return;
      const a = parseAcceptance(line.slice(2));
      if (a?.seq === this.run) {
        this.accepted = a;
        this.inRun = true;
      }
      return;
    }
    if (this.run !== undefined && this.trailer) return;
    if (tag === TAG.stdout || tag === TAG.stderr) {
      (tag === TAG.stdout ? this.out : this.err).add(Buffer.from(line.slice(2), 'base64'));
    } else if (tag === TAG.trailer) {
      this.trailer = parseTrailer(line.slice(2)) ?? this.trailer;
    } else if (tag === TAG.accepted && !this.accepted) {
      this.accepted = parseAcceptance(line.slice(2));
    } else if (tag === TAG.session) {
      this.session = parseSessionNote(line.slice(2)) ?? this.session;
    } else if (tag === TAG.fileHeader) {
      this.blob = 'file';
      this.fileHeader(line.slice(2));
    } else if (tag === TAG.display) {
      this.blob = 'display';
      this.displayHeader(line.slice(2));
    } else if (tag === TAG.fileData && this.blob === 'display') {
      const d = this.displayBlobs[this.displayBlobs.length - 1];
      const data = Buffer.from(line.slice(2), 'base64');
      const room = Math.min((this.caps.displaysCapBytes ?? 0) - this.displaysKept, d ? d.size - d.kept : 0);
      if (d && room >= data.length) {
        d.chunks.push(data);
        d.kept += data.length;
        this.displaysKept += data.length;
      }
    } else if (tag === TAG.fileData) {
      const file = this.files[this.files.length - 1];
      const room = (this.caps.outputFilesCapBytes ?? 0) - this.filesKept;
      if (file) this.filesKept += file.add(Buffer.from(line.slice(2), 'base64'), room);
    }
  }

  private displayHeader(json: string): void {
    let h: { size?: unknown };
    try {
      h = JSON.parse(json) as typeof h;
    } catch {
      return;
    }
    if (typeof h.size !== 'number' || !(h.size > 0)) return;
    if (this.displayBlobs.length >= (this.caps.displaysMaxCount ?? 0)) return;
    this.displayBlobs.push({ size: h.size, chunks: [], kept: 0 });
  }

  /** The displays that came whole and are MIME bundles (strings by type), in order. */
  private displays(): MimeBundle[] {
    const out: MimeBundle[] = [];
    for (const d of this.displayBlobs) {
      if (d.kept !== d.size) continue;
      try {
        const parsed = JSON.parse(Buffer.concat(d.chunks).toString('utf8')) as unknown;
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) continue;
        const bundle: MimeBundle = {};
        for (const [k, v] of Object.entries(parsed as Record<string, unknown>))
          if (typeof v === 'string') bundle[k] = v;
        if (typeof bundle['text/plain'] === 'string') out.push(bundle);
      } catch {
        // not a bundle: dropped
      }
    }
    return out;
  }

  private fileHeader(json: string): void {
    let h: { name?: unknown; size?: unknown };
    try {
      h = JSON.parse(json) as typeof h;
    } catch {
      return;
    }
    if (typeof h.name !== 'string' || typeof h.size !== 'number' || !safeOutputName(h.name)) return;
    if (this.files.length >= (this.caps.outputFilesMaxCount ?? 0)) return;
    this.files.push(new FileCollector(h.name, h.size, this.caps.outputFileCapBytes ?? 0));
  }

  /** The newest text of each stream, and the newest displays (at most LIVE_DISPLAY_BYTES of them), for live output. */
  live(chars = LIVE_TAIL_CHARS): LiveOutput {
    const live: LiveOutput = { stdout: this.out.tail(chars), stderr: this.err.tail(chars) };
    const whole = this.displays();
    if (whole.length === 0) return live;
    const recent: { index: number; bundle: MimeBundle }[] = [];
    let bytes = 0;
    for (let i = whole.length - 1; i >= 0 && recent.length < 4; i--) {
      const size = JSON.stringify(whole[i]).length;
      if (recent.length > 0 && bytes + size > LIVE_DISPLAY_BYTES) break;
      bytes += size;
      recent.unshift({ index: i, bundle: whole[i] });
    }
    live.displays = { count: whole.length, recent: bytes <= LIVE_DISPLAY_BYTES ? recent : [] };
    return live;
  }

  /**
   * The final output. `complete` is false when the log was cut short (read limit, stream lost): the streams are
   * then flagged truncated, as they are when the trailer is missing.
   */
  result(complete = true): ParsedOutput {
    if (!this.skipping && this.partial) this.line(this.partial);
    this.partial = '';
    const cutShort = !complete || this.trailer === null;
    return {
      stdout: this.out.result(this.trailer?.stdoutBytes, cutShort),
      stderr: this.err.result(this.trailer?.stderrBytes, cutShort),
      files: this.files.map((f) => f.result()),
      displays: this.displays(),
      displaysTotal: (this.trailer?.displays ?? 0) + (this.trailer?.displaysDropped ?? 0),
      trailer: this.trailer,
      launcherSeen: this.launcherSeen,
    };
  }
}

/** Parses a whole launcher log at once. */
export function parseLauncherLog(log: string, caps: Caps, complete = true): ParsedOutput {
  const parser = new LauncherLogParser(caps);
  parser.push(log);
  return parser.result(complete);
}

/** What a step reports of a parsed log (the trailer's fields the workflow uses). */
export function collectedOutput(parsed: ParsedOutput, at: number): CollectedOutput {
  const t = parsed.trailer;
  return {
    available: parsed.launcherSeen,
    stdout: parsed.stdout,
    stderr: parsed.stderr,
    outputFiles: parsed.files,
    ...(parsed.displays.length || parsed.displaysTotal
      ? { displays: parsed.displays, displaysTotal: Math.max(parsed.displaysTotal, parsed.displays.length) }
      : {}),
    trailer: t && {
      exitCode: t.exitCode,
      timedOut: t.timedOut,
      terminated: t.terminated,
      startedAt: t.startedAt,
      finishedAt: t.finishedAt,
      error: t.error,
    },
    at,
  };
}

export function emptyStream(): StreamOutput {
  return { text: '', totalBytes: 0, capturedBytes: 0, truncated: false };
}

/**
 * What a reader of live output has not seen yet. `delivered` counts the characters of the stream already handed
 * out; a tail that starts after that (the reader fell behind by more than the tail) yields nothing, so the reader
 * never skips text: the rest comes from the final result. A tail that ends before it (a step that restarted and
 * is reading the log again) yields nothing either.
 */
export function unseen(tail: OutputTail | undefined, delivered: number): string {
  if (!tail) return '';
  const start = tail.end - tail.text.length;
  if (start > delivered || tail.end <= delivered) return '';
  return tail.text.slice(delivered - start);
}

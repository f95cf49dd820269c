/**
 * pods/exec of a short helper in a sandbox's container: what a session's workspace is saved and restored with (its
 * bytes go over the exec's own streams, never through the container's log). stdout is kept up to a cap: past it the
 * exec is closed and the call says so.
 */
import { Readable, Writable } from 'node:stream';
import { Exec, type V1Status } from '@kubernetes/client-node';
import { CONTAINER_NAME } from '../core/manifests';
import { kubeFailure, type Kube } from './kube';

export interface ExecOutcome {
  stdout: Buffer;
  stderr: string;
  /** The command's exit code (null: it did not end by itself, e.g. the exec broke or stdout outgrew its cap). */
  exitCode: number | null;
  /** stdout went past `maxStdoutBytes`: the exec was closed there. */
  overflow: boolean;
}

function exitCodeOf(status: V1Status): number | null {
  if (status.status === 'Success') return 0;
  const code = status.details?.causes?.find((c) => c.reason === 'ExitCode')?.message;
  return code !== undefined && /^\d+$/.test(code) ? Number(code) : null;
}

const STDIN_PIECE = 256 * 1024;

function* pieces(b: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

export async function execInSandbox(
  kube: Kube,
  args: {
    namespace: string;
    pod: string;
    command: string[];
    stdin?: Buffer;
    maxStdoutBytes: number;
    /** Called as output arrives (a heartbeat). */
    onProgress?: (stdoutBytes: number) => void;
    what: string;
  },
): Promise<ExecOutcome> {
  const out: Buffer[] = [];
  let outBytes = 0;
  let overflow = false;
  let stderr = '';
  let close: () => void = () => undefined;
  const stdout = new Writable({
    write(chunk: Buffer, _enc, done) {
      outBytes += chunk.length;
      if (outBytes > args.maxStdoutBytes) {
        overflow = true;
        close();
      } else {
        out.push(chunk);
        args.onProgress?.(outBytes);
      }
      done();
    },
  });
  const stderrSink = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (stderr.length < 16 * 1024) stderr += chunk.toString('utf8');
      done();
    },
  });
  let status: V1Status | undefined;
  // In pieces: each becomes one WebSocket message, and the apiserver and kubelet take messages of a bounded size.
  const stdin = args.stdin ? Readable.from(pieces(args.stdin, STDIN_PIECE)) : null;
  let ws: { close(): void; once(event: 'close', listener: () => void): void; readyState: number };
  try {
    const socket: unknown = await new Exec(kube.config).exec(
      args.namespace,
      args.pod,
      CONTAINER_NAME,
      args.command,
      stdout,
      stderrSink,
      stdin,
      false,
      (s) => {
        status = s;
      },
    );
    // The exec's WebSocket (its type comes from `ws`, whose typings the client library does not ship).
    ws = socket as typeof ws;
  } catch (err) {
    throw kubeFailure(err, args.what);
  }
  close = () => ws.close();
  await new Promise<void>((resolve) => {
    if (ws.readyState >= 2) resolve();
    else ws.once('close', () => resolve());
  });
  return {
    stdout: Buffer.concat(out),
    stderr,
    exitCode: overflow || !status ? null : exitCodeOf(status),
    overflow,
  };
}

/** pods/attach to a sandbox's launcher: its stdin (a task goes in), and when asked its stdout (what it writes while attached). */
import { PassThrough, type Writable, type Readable } from 'node:stream';
import { Attach } from '@kubernetes/client-node';
import { CONTAINER_NAME } from '../core/manifests';
import { kubeFailure, type Kube } from './kube';

export interface Attached {
  /** Ends the attach session. */
  close(): void;
  /** Whether the connection answers a ping within `ms` (a connection can be dead before its close is seen). */
  answers(ms: number): Promise<boolean>;
  /** Resolves when the attach session has ended, whoever ended it (this side, the apiserver, the network). */
  closed: Promise<void>;
}

/** Attaches to the pod's sandbox container; an API error becomes a typed failure naming `what`. */
export async function attachLauncher(
  kube: Kube,
  namespace: string,
  pod: string,
  io: { stdin: Readable; stdout?: Writable },
  what: string,
  /** hold: false lets the process exit while the attach is open (one kept between runs). */
  options: { hold?: boolean } = {},
): Promise<Attached> {
  try {
    const socket: unknown = await new Attach(kube.config).attach(
      namespace,
      pod,
      CONTAINER_NAME,
      io.stdout ?? null,
      null,
      io.stdin,
      false,
    );
    // The attach's WebSocket (its type comes from `ws`, whose typings the client library does not ship).
    const ws = socket as {
      close(): void;
      once(event: 'close' | 'pong', listener: () => void): void;
      off(event: 'pong', listener: () => void): void;
      ping(): void;
      readyState: number;
      _socket?: { unref(): void };
    };
    // `ws` has no public unref: its socket does.
    if (options.hold === false) ws._socket?.unref();
    const closed = new Promise<void>((resolve) => {
      if (ws.readyState >= 2)
        resolve(); // CLOSING or CLOSED already
      else ws.once('close', () => resolve());
    });
    const answers = (ms: number) =>
      new Promise<boolean>((resolve) => {
        if (ws.readyState !== 1) return resolve(false);
        const pong = () => {
          clearTimeout(timer);
          resolve(true);
        };
        const timer = setTimeout(() => {
          ws.off('pong', pong);
          resolve(false);
        }, ms);
        ws.once('pong', pong);
        try {
          ws.ping();
        } catch {
          ws.off('pong', pong);
          clearTimeout(timer);
          resolve(false);
        }
      });
    return { close: () => ws.close(), closed, answers };
  } catch (err) {
    throw kubeFailure(err, what);
  }
}

/** An attach to a session's launcher kept open between runs: a run writes its task and listens to stdout while it runs. */
export interface HeldAttach {
  write(data: string | Uint8Array): void;
  /** Sends stdout to `onData` until the returned function is called; `onEnd` if the attach ends meanwhile. */
  listen(onData: (piece: Buffer) => void, onEnd: () => void): () => void;
}

/** How long a kept attach has to answer a ping before a run uses it. */
const PING_MS = 1000;

interface Held extends HeldAttach {
  attached: Attached;
  timer?: NodeJS.Timeout;
}

/**
 * The attaches of one worker process to its sessions' launchers, each kept open between runs (opening one costs a
 * WebSocket, TLS and the kubelet's attach: tens of ms, as much as the run of a small cell) and closed after `idleMs`
 * unused, when the session's pods are released, or when it breaks. A kept attach never holds the process open.
 */
export class LauncherAttachments {
  private readonly held = new Map<string, Promise<Held>>();

  constructor(
    private readonly kube: Kube,
    private readonly idleMs = 60_000,
  ) {}

  async use(namespace: string, pod: string, what: string): Promise<HeldAttach> {
    const key = `${namespace}/${pod}`;
    let entry = this.held.get(key);
    // A kept attach is used only if it still answers: one that died unseen would swallow the run's task.
    if (
      entry &&
      !(await entry.then(
        (h) => h.attached.answers(PING_MS),
        () => false,
      ))
    ) {
      this.close(key);
      entry = undefined;
    }
    if (!entry) {
      entry = this.open(namespace, pod, what, key);
      this.held.set(key, entry);
      entry.catch(() => this.held.delete(key));
    }
    const h = await entry;
    clearTimeout(h.timer);
    h.timer = setTimeout(() => this.close(key), this.idleMs);
    h.timer.unref();
    return h;
  }

  /** Closes the attaches to these pods (their session released them). */
  closePods(namespace: string, pods: string[]): void {
    for (const pod of pods) this.close(`${namespace}/${pod}`);
  }

  private close(key: string): void {
    const entry = this.held.get(key);
    this.held.delete(key);
    void entry?.then(
      (h) => {
        clearTimeout(h.timer);
        h.attached.close();
      },
      () => undefined,
    );
  }

  private async open(namespace: string, pod: string, what: string, key: string): Promise<Held> {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const listeners = new Set<{ onData: (piece: Buffer) => void; onEnd: () => void }>();
    stdout.on('data', (piece: Buffer) => {
      for (const l of listeners) l.onData(piece);
    });
    const entry = this.held.get(key);
    const attached = await attachLauncher(this.kube, namespace, pod, { stdin, stdout }, what, { hold: false });
    let ended = false;
    void attached.closed.then(() => {
      ended = true;
      if (this.held.get(key) === entry) this.held.delete(key);
      for (const l of listeners) l.onEnd();
    });
    return {
      attached,
      write: (data) => stdin.write(data),
      listen: (onData, onEnd) => {
        const l = { onData, onEnd };
        listeners.add(l);
        // Ended before this run listened: it hears so at once.
        if (ended) queueMicrotask(onEnd);
        return () => listeners.delete(l);
      },
    };
  }
}

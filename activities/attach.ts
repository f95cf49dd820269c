/** pods/attach to a sandbox's launcher: its stdin (a task goes in), and when asked its stdout (what it writes while attached). */
import type { Writable, Readable } from 'node:stream';
import { Attach } from '@kubernetes/client-node';
import { CONTAINER_NAME } from '../core/manifests';
import { kubeFailure, type Kube } from './kube';

export interface Attached {
  /** Ends the attach session. */
  close(): void;
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
    const ws = socket as { close(): void; once(event: 'close', listener: () => void): void; readyState: number };
    const closed = new Promise<void>((resolve) => {
      if (ws.readyState >= 2)
        resolve(); // CLOSING or CLOSED already
      else ws.once('close', () => resolve());
    });
    return { close: () => ws.close(), closed };
  } catch (err) {
    throw kubeFailure(err, what);
  }
}

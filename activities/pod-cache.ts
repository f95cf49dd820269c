/**
 * One worker-wide view of the sandbox pods of a namespace: the client library's informer (a list, then one watch
 * from its resourceVersion, re-listed when the watch falls too far behind), shared by every execution's watch, every
 * cleanup and every claim of the worker, so that none of them opens a watch or lists pods of its own. Claims still
 * win or lose by their conditional write; what must not be stale (the last look before a verdict, an empty answer
 * to a cleanup) is still read from the apiserver by the caller.
 */
import { makeInformer, type Informer, type ObjectCache, type V1Pod } from '@kubernetes/client-node';
import { LABELS, MANAGED_BY } from '../core/names';
import { matchesSelector } from '../core/selector';
import type { Kube } from './kube';

export type PodEvent = 'add' | 'update' | 'delete';
export type PodListener = (event: PodEvent, pod: V1Pod) => void;

/** How long the informer waits before it starts again after an error, doubling up to the cap. */
const RESTART_MS = { first: 250, max: 8_000 };

export class SandboxPodCache {
  private readonly informer: Informer<V1Pod> & ObjectCache<V1Pod>;
  private readonly listeners = new Set<PodListener>();
  private started = false;
  private stopped = false;
  private listed = false;
  private restartMs = RESTART_MS.first;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly ready: Promise<void>;
  private markReady: () => void = () => undefined;
  /** Lists and watches started (each a request: what the cache costs, whatever the number of executions). */
  requests = 0;

  constructor(
    kube: Pick<Kube, 'config' | 'core'>,
    readonly namespace: string,
  ) {
    const labelSelector = `${LABELS.managedBy}=${MANAGED_BY}`;
    this.ready = new Promise<void>((resolve) => (this.markReady = resolve));
    this.informer = makeInformer<V1Pod>(
      kube.config,
      `/api/v1/namespaces/${namespace}/pods`,
      async () => {
        this.requests++;
        const list = await kube.core.listNamespacedPod({ namespace, labelSelector });
        this.listed = true;
        return list;
      },
      labelSelector,
    );
    const fanOut = (event: PodEvent) => (pod: V1Pod) => {
      this.restartMs = RESTART_MS.first;
      for (const l of this.listeners) l(event, pod);
    };
    this.informer.on('add', fanOut('add'));
    this.informer.on('update', fanOut('update'));
    this.informer.on('delete', fanOut('delete'));
    this.informer.on('connect', () => this.requests++);
    // The library's informer stops at an error (an apiserver restarting, a broken connection): start it again,
    // from where it was (or from a new list when that is too old).
    this.informer.on('error', () => this.restartSoon());
  }

  /** Resolves once the cache holds a whole list of the namespace's sandbox pods (starting it on first use). */
  synced(): Promise<void> {
    if (!this.started) {
      this.started = true;
      void this.start();
    }
    return this.ready;
  }

  /** The cached pods the selector matches. */
  pods(selector: string): V1Pod[] {
    return this.informer.list(this.namespace).filter((p) => matchesSelector(p.metadata?.labels, selector));
  }

  get(name: string): V1Pod | undefined {
    return this.informer.get(name, this.namespace);
  }

  /** Calls `listener` with every change from now on; returns the function that stops it. */
  subscribe(listener: PodListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    void this.informer.stop();
  }

  private async start(): Promise<void> {
    if (this.stopped) return;
    await this.informer.start();
    if (this.listed) this.markReady();
  }

  private restartSoon(): void {
    if (this.stopped || this.restartTimer) return;
    const ms = this.restartMs;
    this.restartMs = Math.min(this.restartMs * 2, RESTART_MS.max);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      void this.start();
    }, ms);
    this.restartTimer.unref();
  }
}

/** The caches of one worker process, one per namespace, made on first use. */
export class PodCaches {
  private readonly caches = new Map<string, SandboxPodCache>();
  private stopped = false;

  constructor(private readonly kube: Pick<Kube, 'config' | 'core'>) {}

  for(namespace: string): SandboxPodCache {
    let cache = this.caches.get(namespace);
    if (!cache) {
      cache = new SandboxPodCache(this.kube, namespace);
      // Asked for after the worker closed its clients (a step still unwinding): a cache that never starts a watch,
      // which would otherwise keep the process alive for good.
      if (this.stopped) {
        cache.stop();
        return cache;
      }
      this.caches.set(namespace, cache);
    }
    return cache;
  }

  /** Lists and watches the caches have started. */
  get requests(): number {
    let n = 0;
    for (const c of this.caches.values()) n += c.requests;
    return n;
  }

  stop(): void {
    this.stopped = true;
    for (const c of this.caches.values()) c.stop();
    this.caches.clear();
  }
}

/**
 * The pods of one attempt, as a watch sees them: the newest state of each, and whether one that had been seen was
 * deleted before its container finished. A small unit around the watch loop: the run step asks it for the current
 * pod and waits on `changed()`. In a worker it follows the worker's shared pod cache (pod-cache.ts: no request of
 * its own); elsewhere (a Kube without one) it watches the attempt's pods itself and re-lists when that watch breaks.
 */
import { Watch, type V1Pod } from '@kubernetes/client-node';
import { matchesSelector, newerVersion } from '../core/selector';
import { kubeCall, type Kube } from './kube';
import type { SandboxPodCache } from './pod-cache';

export class AttemptPods {
  private readonly pods = new Map<string, V1Pod>();
  private watch: AbortController | undefined;
  private watching = false;
  private readonly cache: SandboxPodCache | undefined;
  private unsubscribe: (() => void) | undefined;
  private resourceVersion: string | undefined;
  private wake: () => void = () => undefined;
  /** A pod that had been seen was deleted before its container finished. */
  gone = false;

  constructor(
    private readonly kube: Kube,
    private readonly namespace: string,
    private readonly selector: string,
    /** A pod an earlier try of the step had seen (from its heartbeat): its absence from a list means it was lost. */
    private readonly knownPod?: { name: string; finished: boolean },
  ) {
    this.cache = kube.pods?.for(namespace);
  }

  /** Whether it follows the worker's shared cache (no watch or list of its own). */
  get shared(): boolean {
    return this.cache !== undefined;
  }

  /** The attempt's pod (the oldest, should there ever be more than one). */
  get pod(): V1Pod | undefined {
    let oldest: V1Pod | undefined;
    const created = (p: V1Pod) => new Date(p.metadata?.creationTimestamp ?? 0).getTime();
    for (const p of this.pods.values()) if (!oldest || created(p) < created(oldest)) oldest = p;
    return oldest;
  }

  /** Every pod of the attempt the watch knows of. */
  get all(): V1Pod[] {
    return [...this.pods.values()];
  }

  get isWatching(): boolean {
    return this.watching;
  }

  /**
   * Starts watching. With `from` (a fresh attempt: the resourceVersion its Job's create or its pod's claim returned,
   * and the claimed pod itself) the watch starts right there and misses nothing after it: one request, served at
   * once. Without it and without `list`, it starts from the current state (the server sends every existing pod
   * first, after making sure its cache is current, which can take a moment). With `list` (a resumed step, or a
   * broken watch), a list comes first, so a pod deleted in between is noticed.
   */
  async start(list: boolean, from?: { resourceVersion?: string; pod?: V1Pod }): Promise<void> {
    if (this.cache) return this.follow(this.cache, from?.pod);
    if (list) await this.resync();
    else if (from?.resourceVersion) this.resourceVersion = from.resourceVersion;
    if (from?.pod) this.pods.set(from.pod.metadata!.name!, from.pod);
    this.watching = true;
    const params: Record<string, string | boolean> = { labelSelector: this.selector, allowWatchBookmarks: true };
    if ((list || from?.resourceVersion) && this.resourceVersion) params.resourceVersion = this.resourceVersion;
    try {
      this.watch = await new Watch(this.kube.config).watch(
        `/api/v1/namespaces/${this.namespace}/pods`,
        params,
        (type: string, obj: V1Pod) => {
          if (type === 'ADDED' || type === 'MODIFIED') this.pods.set(obj.metadata!.name!, obj);
          else if (type === 'DELETED') this.noteGone(obj.metadata!.name!);
          if (obj.metadata?.resourceVersion) this.resourceVersion = obj.metadata.resourceVersion;
          this.wake();
        },
        () => {
          this.watching = false;
          this.wake();
        },
      );
    } catch (err) {
      this.watching = false;
      throw err;
    }
  }

  /** Follows the shared cache: what it holds of the attempt now, then every change. */
  private async follow(cache: SandboxPodCache, claimed: V1Pod | undefined): Promise<void> {
    await cache.synced();
    this.unsubscribe?.();
    this.unsubscribe = cache.subscribe((event, pod) => {
      const name = pod.metadata?.name;
      if (!name || !matchesSelector(pod.metadata?.labels, this.selector)) return;
      if (event === 'delete') this.noteGone(name);
      else this.keep(pod);
      this.wake();
    });
    this.watching = true;
    this.take(cache.pods(this.selector));
    // A claimed pod's new labels may not have reached the cache yet: the claim's answer stands until they do.
    if (claimed) this.keep(claimed);
  }

  /**
   * Re-reads the attempt's pods (a missed event, a stalled watch): from the shared cache, or, with `fromServer` or
   * without a cache, from the apiserver (a consistent read: what a verdict or an empty cleanup rests on).
   */
  async resync(fromServer = false): Promise<void> {
    // The cache's deletions arrive as events; a pod it does not hold yet (a claim's new labels on their way) is not gone.
    if (this.cache && !fromServer) return this.cache.pods(this.selector).forEach((p) => this.keep(p));
    const list = await kubeCall('list the pods of the attempt', () =>
      this.kube.core.listNamespacedPod({ namespace: this.namespace, labelSelector: this.selector }),
    );
    this.take(list.items);
    if (!this.cache) this.resourceVersion = list.metadata?.resourceVersion;
  }

  /** Takes a complete list of the attempt's pods: those missing from it are gone. */
  private take(items: V1Pod[]): void {
    const present = new Set(items.map((p) => p.metadata!.name!));
    for (const known of [...this.pods.keys()]) if (!present.has(known)) this.noteGone(known);
    if (this.knownPod && !this.knownPod.finished && !present.has(this.knownPod.name)) this.gone = true;
    for (const p of items) this.keep(p);
  }

  /** Keeps the newer of what it had and `pod` (a list and the cache's events may cross). */
  private keep(pod: V1Pod): void {
    const name = pod.metadata!.name!;
    const had = this.pods.get(name);
    if (!had || newerVersion(pod.metadata?.resourceVersion, had.metadata?.resourceVersion)) this.pods.set(name, pod);
  }

  /** Resolves on the next event, or after `ms`. */
  changed(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = () => undefined;
        resolve();
      };
    });
  }

  /** Wakes whoever waits on changed() (e.g. on cancellation or new log output). */
  poke(): void {
    this.wake();
  }

  stop(): void {
    this.watch?.abort();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.watching = false;
  }

  private noteGone(name: string): void {
    const last = this.pods.get(name);
    const finished = last?.status?.containerStatuses?.some((c) => c.state?.terminated);
    if (!finished) this.gone = true;
    this.pods.delete(name);
  }
}

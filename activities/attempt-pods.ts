/**
 * The pods of one attempt, as a watch sees them: the newest state of each, and whether one that had been seen was
 * deleted before its container finished. A small unit around the watch loop: the run step asks it for the current
 * pod and waits on `changed()`; it re-lists when the watch breaks or a resync is due.
 */
import { Watch, type V1Pod } from '@kubernetes/client-node';
import { kubeCall, type Kube } from './kube';

export class AttemptPods {
  private readonly pods = new Map<string, V1Pod>();
  private watch: AbortController | undefined;
  private watching = false;
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
  ) {}

  /** The attempt's pod (the oldest, should there ever be more than one). */
  get pod(): V1Pod | undefined {
    let oldest: V1Pod | undefined;
    for (const p of this.pods.values()) {
      const t = p.metadata?.creationTimestamp?.valueOf() ?? 0;
      if (!oldest || t < (oldest.metadata?.creationTimestamp?.valueOf() ?? 0)) oldest = p;
    }
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

  /** Re-reads the attempt's pods (a missed event, a stalled watch). */
  async resync(): Promise<void> {
    const list = await kubeCall('list the pods of the attempt', () =>
      this.kube.core.listNamespacedPod({ namespace: this.namespace, labelSelector: this.selector }),
    );
    const present = new Set(list.items.map((p) => p.metadata!.name!));
    for (const known of [...this.pods.keys()]) if (!present.has(known)) this.noteGone(known);
    if (this.knownPod && !this.knownPod.finished && !present.has(this.knownPod.name)) this.gone = true;
    for (const p of list.items) this.pods.set(p.metadata!.name!, p);
    this.resourceVersion = list.metadata?.resourceVersion;
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
    this.watching = false;
  }

  private noteGone(name: string): void {
    const last = this.pods.get(name);
    const finished = last?.status?.containerStatuses?.some((c) => c.state?.terminated);
    if (!finished) this.gone = true;
    this.pods.delete(name);
  }
}

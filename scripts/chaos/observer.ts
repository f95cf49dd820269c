/**
 * Watches every Job and pod the project creates, surviving apiserver outages (re-list and re-watch), and counts
 * distinct objects per execution: how many Jobs and pods each execution really got.
 */
import { Watch, type KubernetesObject } from '@kubernetes/client-node';
import type { Kube } from '../../activities/kube';
import { LABELS, MANAGED_BY } from '../../core/names';

type Listener = (kind: 'Job' | 'Pod', type: string, obj: KubernetesObject) => void;

export class ClusterObserver {
  readonly jobs = new Map<string, Set<string>>();
  readonly pods = new Map<string, Set<string>>();
  private readonly aborts: AbortController[] = [];
  private stopped = false;
  private readonly listeners: Listener[] = [];

  constructor(
    private readonly kube: Kube,
    private readonly namespace: string,
  ) {}

  on(listener: Listener): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    await Promise.all([this.loop('Job'), this.loop('Pod')]);
  }

  private record(kind: 'Job' | 'Pod', obj: KubernetesObject): void {
    const label = obj.metadata?.labels?.[LABELS.execution];
    if (!label || !obj.metadata?.uid) return;
    const map = kind === 'Job' ? this.jobs : this.pods;
    const set = map.get(label) ?? new Set<string>();
    set.add(obj.metadata.uid);
    map.set(label, set);
  }

  private async list(kind: 'Job' | 'Pod'): Promise<string | undefined> {
    const labelSelector = `${LABELS.managedBy}=${MANAGED_BY}`;
    const l =
      kind === 'Job'
        ? await this.kube.batch.listNamespacedJob({ namespace: this.namespace, labelSelector })
        : await this.kube.core.listNamespacedPod({ namespace: this.namespace, labelSelector });
    for (const o of l.items) this.record(kind, o);
    return l.metadata?.resourceVersion;
  }

  /** List, then watch from that version; on any end or error, wait a moment and do it again. */
  private async loop(kind: 'Job' | 'Pod'): Promise<void> {
    const path = kind === 'Job' ? `/apis/batch/v1/namespaces/${this.namespace}/jobs` : `/api/v1/namespaces/${this.namespace}/pods`;
    const again = (): void => {
      if (!this.stopped) setTimeout(() => void this.loop(kind), 500);
    };
    try {
      const resourceVersion = await this.list(kind);
      const abort = await new Watch(this.kube.config).watch(
        path,
        { labelSelector: `${LABELS.managedBy}=${MANAGED_BY}`, resourceVersion },
        (type: string, obj: KubernetesObject) => {
          if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
            this.record(kind, obj);
            for (const l of this.listeners) l(kind, type, obj);
          }
        },
        () => again(),
      );
      this.aborts.push(abort);
    } catch {
      again();
    }
  }

  stop(): void {
    this.stopped = true;
    for (const a of this.aborts) a.abort();
  }
}

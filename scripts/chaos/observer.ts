/**
 * Watches every Job and pod the project creates, surviving apiserver outages (re-list and re-watch), and counts
 * distinct objects per execution: how many Jobs and pods each execution really got. A warm pool pod counts for an
 * execution only if it ran its program: its launcher's termination message says which task it accepted (a pod
 * claimed but never handed its task, then lost, ran nothing).
 */
import { Watch, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import type { Kube } from '../../activities/kube';
import { LABELS, MANAGED_BY } from '../../core/names';

type Listener = (kind: 'Job' | 'Pod', type: string, obj: KubernetesObject) => void;

export class ClusterObserver {
  readonly jobs = new Map<string, Set<string>>();
  readonly pods = new Map<string, Set<string>>();
  /** Pool pods (by uid) seen with the termination message of an accepted task. */
  readonly poolPodsThatRan = new Set<string>();
  readonly poolPods = new Set<string>();
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
    if (kind === 'Pod' && obj.metadata?.labels?.[LABELS.pool] && obj.metadata.uid) {
      this.poolPods.add(obj.metadata.uid);
      const message = (obj as V1Pod).status?.containerStatuses?.[0]?.state?.terminated?.message ?? '';
      if (message.startsWith('accepted ')) this.poolPodsThatRan.add(obj.metadata.uid);
    }
    const label = obj.metadata?.labels?.[LABELS.execution];
    if (!label || !obj.metadata?.uid) return;
    const map = kind === 'Job' ? this.jobs : this.pods;
    const set = map.get(label) ?? new Set<string>();
    set.add(obj.metadata.uid);
    map.set(label, set);
  }

  /** The pods of an execution that ran a program: its Jobs' pods, and pool pods that accepted a task. */
  podsThatRan(label: string): number {
    return [...(this.pods.get(label) ?? [])].filter((uid) => !this.poolPods.has(uid) || this.poolPodsThatRan.has(uid))
      .length;
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
    const path =
      kind === 'Job' ? `/apis/batch/v1/namespaces/${this.namespace}/jobs` : `/api/v1/namespaces/${this.namespace}/pods`;
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

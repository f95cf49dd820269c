/**
 * Removes what the bench created and left behind (interrupted, or a run that failed half-way): every Job,
 * ConfigMap and Pod labelled app.kubernetes.io/managed-by=durable-sandbox whose execution label is one of the
 * bench's executions. Other users' objects in the namespace are never touched.
 */
import type { Kube } from '../../activities/kube';
import { LABELS, MANAGED_BY, resourceNames } from '../../core/names';

export interface Swept {
  jobs: number;
  configMaps: number;
  pods: number;
}

const managed = `${LABELS.managedBy}=${MANAGED_BY}`;

export class Leftovers {
  private readonly labels = new Set<string>();

  constructor(
    private readonly kube: Kube,
    private readonly namespace: string,
  ) {}

  /** Remember an execution before anything of it is created. */
  track(executionId: string): void {
    this.labels.add(resourceNames(executionId, 1).executionLabel);
  }

  private ours(o: { metadata?: { labels?: Record<string, string> } }): boolean {
    return this.labels.has(o.metadata?.labels?.[LABELS.execution] ?? '');
  }

  /** What of the bench's executions is still in the cluster. */
  async find(): Promise<{ jobs: string[]; configMaps: string[]; pods: string[] }> {
    const { namespace } = this;
    const [jobs, cms, pods] = await Promise.all([
      this.kube.batch.listNamespacedJob({ namespace, labelSelector: managed }),
      this.kube.core.listNamespacedConfigMap({ namespace, labelSelector: managed }),
      this.kube.core.listNamespacedPod({ namespace, labelSelector: managed }),
    ]);
    const names = (l: { items: { metadata?: { name?: string; labels?: Record<string, string> } }[] }) =>
      l.items.filter((o) => this.ours(o)).map((o) => o.metadata!.name!);
    return { jobs: names(jobs), configMaps: names(cms), pods: names(pods) };
  }

  /** Deletes everything of the bench's executions; pods without grace. Returns what it deleted. */
  async sweep(): Promise<Swept> {
    const { namespace } = this;
    const left = await this.find();
    const quiet = (p: Promise<unknown>) =>
      p.then(
        () => undefined,
        () => undefined,
      );
    await Promise.all([
      ...left.jobs.map((name) =>
        quiet(this.kube.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Background' })),
      ),
      ...left.configMaps.map((name) => quiet(this.kube.core.deleteNamespacedConfigMap({ name, namespace }))),
      ...left.pods.map((name) => quiet(this.kube.core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 }))),
    ]);
    return { jobs: left.jobs.length, configMaps: left.configMaps.length, pods: left.pods.length };
  }

  /** Sweeps until nothing is left, or the time is up. Returns what the first sweep found. */
  async sweepUntilClean(timeoutMs = 60_000): Promise<Swept> {
    const start = Date.now();
    const first = await this.sweep();
    let last = first;
    while (last.jobs + last.configMaps + last.pods > 0 && Date.now() - start < timeoutMs) {
      await new Promise((r) => setTimeout(r, 1000));
      last = await this.sweep();
    }
    return first;
  }
}

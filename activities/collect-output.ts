/**
 * Reads the sandbox's whole log once and splits it back into stdout and stderr, capped: the output so far of an
 * attempt that was cancelled (the run step, which streams it, was stopped). Reads at most what the caps can
 * produce, so a program that floods its output costs the worker nothing.
 */
import type { AttemptRef, CollectedOutput } from '../core/attempt';
import { CONTAINER_NAME } from '../core/manifests';
import { resourceNames } from '../core/names';
import { collectedOutput, emptyStream, logReadLimit, parseLauncherLog, type Caps } from '../core/output';
import type { ActivityDeps } from './deps';
import { apiStatus, kubeCall, kubeFailure } from './kube';

export interface CollectInput extends AttemptRef {
  /** The pod to read; when unknown the attempt's pod is looked up by its labels. */
  podName?: string;
  caps: Caps;
}

export function collectOutputActivity({ kube }: ActivityDeps) {
  return async function collectOutput(input: CollectInput): Promise<CollectedOutput> {
    const limit = logReadLimit(input.caps);
    const none = (): CollectedOutput => ({
      available: false,
      stdout: emptyStream(),
      stderr: emptyStream(),
      trailer: null,
      at: Date.now(),
    });
    let podName = input.podName;
    if (!podName) {
      const { attemptSelector } = resourceNames(input.executionId, input.attempt);
      const pods = await kubeCall('find the pod of this attempt', () =>
        kube.core.listNamespacedPod({ namespace: input.namespace, labelSelector: attemptSelector }),
      );
      podName = pods.items[0]?.metadata?.name;
      if (!podName) return none();
    }
    let log: string;
    try {
      log = await kube.core.readNamespacedPodLog({
        name: podName,
        namespace: input.namespace,
        container: CONTAINER_NAME,
        limitBytes: limit,
      });
    } catch (err) {
      const s = apiStatus(err);
      // 404: the pod is gone; 400: its container never started. Either way there is no output to collect.
      if (s && (s.code === 404 || s.code === 400)) return none();
      throw kubeFailure(err, `read the log of pod ${podName}`);
    }
    const complete = Buffer.byteLength(log, 'utf8') < limit;
    return collectedOutput(parseLauncherLog(log, input.caps, complete), Date.now());
  };
}

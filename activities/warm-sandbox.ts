/**
 * Taking a sandbox from the warm pool for one attempt: claim a ready pod with one conditional write (or find the
 * one an earlier try of the step claimed), and hand it the task over the Kubernetes API (pods/attach to the
 * launcher's stdin: the sandbox keeps no network). The launcher accepts one whole, checksummed task and closes its
 * stdin; a pod is claimed once and deleted after its program, never made ready again.
 */
import { PassThrough } from 'node:stream';
import { PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { log } from '@temporalio/activity';
import type { AttemptSpec } from '../core/attempt';
import { SANDBOX_LANGUAGES, sandboxLanguage, type Language } from '../core/languages';
import { CONTAINER_NAME, launcherTask, type SandboxNetwork } from '../core/manifests';
import { attemptNetwork } from './egress';
import { hash16, LABELS, resourceNames } from '../core/names';
import { capsOf, LauncherLogParser, logReadLimit } from '../core/output';
import {
  claimable,
  claimPatch,
  fitsPool,
  POOL_SIGNALS,
  poolRef,
  poolSelector,
  poolWorkflowId,
  type PoolRef,
} from '../core/pool';
import { poolSize, type ActivityDeps } from './deps';
import { attachLauncher } from './attach';
import { apiStatus, kubeCall, kubeFailure, type Kube } from './kube';
import type { Handover, SandboxSource } from './sandboxes';
import { frameTask } from './task-frame';

export interface Claimed {
  pod: V1Pod;
  /** True when an earlier try of the step had claimed it (its task may already have been delivered). */
  adopted: boolean;
  at: number;
}

const ownedBy = (spec: AttemptSpec) => (p: V1Pod) => {
  const { executionLabel } = resourceNames(spec.executionId, spec.attempt);
  return (
    p.metadata?.labels?.[LABELS.execution] === executionLabel &&
    p.metadata?.labels?.[LABELS.attempt] === String(spec.attempt)
  );
};

/** The pool pod an earlier try claimed for this attempt, if it is still there. */
export async function findClaimedPod(kube: Kube, pool: PoolRef, spec: AttemptSpec): Promise<V1Pod | undefined> {
  const { attemptSelector } = resourceNames(spec.executionId, spec.attempt);
  const list = await kubeCall('look for the pool pod of this attempt', () =>
    kube.core.listNamespacedPod({
      namespace: spec.policy.namespace,
      labelSelector: `${attemptSelector},${LABELS.pool}=${pool.id}`,
    }),
  );
  return list.items.find(ownedBy(spec));
}

/**
 * Claims a ready pod of the pool for the attempt (or finds the one already claimed for it). One list, then one
 * patch per candidate until one succeeds: a pod claimed by someone else in between answers 409 and the next is
 * tried. Undefined when the pool has nothing ready (the attempt then goes cold).
 */
/** The worker's log, from within an activity (tests also call the claim directly, outside any). */
function note(message: string, attrs: Record<string, unknown>): void {
  try {
    log.info(message, attrs);
  } catch {
    // No activity context: nobody to tell.
  }
}

export async function claimWarmPod(
  kube: Kube,
  pool: PoolRef,
  spec: AttemptSpec,
  network?: SandboxNetwork,
): Promise<Claimed | undefined> {
  const namespace = spec.policy.namespace;
  const list = { items: await poolPods(kube, namespace, poolSelector(pool), `list the ${pool.id} pool`) };
  const own = list.items.find(ownedBy(spec));
  if (own) return { pod: own, adopted: true, at: Date.now() };
  const ready = list.items.filter((p) => claimable(p, pool));
  if (ready.length === 0) {
    note('no ready pod in the warm pool: the attempt runs cold', {
      pool: pool.id,
      pods: list.items.map((p) => `${p.metadata?.name}:${p.metadata?.labels?.[LABELS.poolState]}:${p.status?.phase}`),
    });
    return undefined;
  }
  // Concurrent claims start at different pods, so they rarely collide.
  const start = parseInt(hash16(`${spec.executionId}#${spec.attempt}`).slice(0, 8), 16) % ready.length;
  for (let i = 0; i < ready.length; i++) {
    const candidate = ready[(start + i) % ready.length];
    const name = candidate.metadata!.name!;
    try {
      const pod = await kube.core.patchNamespacedPod(
        { name, namespace, body: claimPatch(candidate, { ...spec, now: Date.now(), ...(network ? { network } : {}) }) },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      return { pod, adopted: false, at: Date.now() };
    } catch (err) {
      const s = apiStatus(err);
      // 409: claimed by someone else first; 404: gone; 422: its deadline cannot fit this program. Try the next.
      if (s && [404, 409, 422].includes(s.code)) {
        note('claiming a warm pool pod failed; trying the next', { pod: name, code: s.code, message: s.message });
        continue;
      }
      throw kubeFailure(err, `claim pool pod ${name}`);
    }
  }
  return undefined;
}

/**
 * A pool's pods as the worker's pod cache holds them (no request), or from the apiserver's cache (resourceVersion 0)
 * without one: a stale entry only costs a 409 on the conditional write of a claim.
 */
export async function poolPods(kube: Kube, namespace: string, selector: string, what: string): Promise<V1Pod[]> {
  const cache = kube.pods?.for(namespace);
  if (cache) {
    await cache.synced();
    return cache.pods(selector);
  }
  const list = await kubeCall(what, () =>
    kube.core.listNamespacedPod({ namespace, labelSelector: selector, resourceVersion: '0' }),
  );
  return list.items;
}

/** Writes the task to the pod's launcher through pods/attach; closing the handover ends the attach (and stdin). */
export async function deliverTask(
  kube: Kube,
  pod: string,
  spec: AttemptSpec,
  network?: SandboxNetwork,
): Promise<Handover> {
  const stdin = new PassThrough();
  const attached = await attachLauncher(kube, spec.policy.namespace, pod, { stdin }, `attach to pool pod ${pod}`);
  stdin.end(frameTask(launcherTask(spec.executionId, spec.attempt, spec.request, spec.policy, 'handed', network)));
  return attached;
}

/**
 * Whether an earlier try of the step already handed the task over (or the pod ended): read from the pod's log, so
 * a resumed step never writes a second task into a pod.
 */
export async function alreadyDelivered(kube: Kube, pod: string, spec: AttemptSpec): Promise<boolean> {
  const caps = capsOf(spec.policy);
  let log: string;
  try {
    log = await kube.core.readNamespacedPodLog({
      name: pod,
      namespace: spec.policy.namespace,
      container: CONTAINER_NAME,
      limitBytes: logReadLimit(caps),
    });
  } catch (err) {
    const s = apiStatus(err);
    if (s && (s.code === 400 || s.code === 404)) return true;
    throw kubeFailure(err, `read the log of pool pod ${pod}`);
  }
  const parser = new LauncherLogParser(caps);
  parser.push(log);
  return parser.accepted !== null || parser.trailer !== null;
}

/**
 * How often at most a worker signals one pool: the claims of a burst, each of which asks for a refill, make one or
 * two signals (each a workflow task of the pool's) instead of one each. The pool refills a few seconds after a signal
 * from a fresh count, so one signal covers every claim before it; a claim inside the window is followed by a signal at
 * its end. (Hand-made rather than a library's throttle: its timer must not keep a stopping process alive.)
 */
export const NUDGE_EVERY_MS = 1000;

/** A pool's last signal from this worker, and the one due at the end of its window. */
interface Nudger {
  last: number;
  due?: NodeJS.Timeout;
}

const nudgers = new WeakMap<ActivityDeps, Map<string, Nudger>>();

/** Asks the task queue's pools for a round soon: after a claim they refill, with an execution waiting they give way. */
export function nudgePools(
  deps: ActivityDeps,
  taskQueue: string,
  languages: readonly Language[] = SANDBOX_LANGUAGES,
): void {
  const mine = nudgers.get(deps) ?? new Map<string, Nudger>();
  nudgers.set(deps, mine);
  for (const language of new Set(languages.map(sandboxLanguage).filter((l) => poolSize(deps, l) > 0))) {
    const id = poolWorkflowId(taskQueue, language);
    const n = mine.get(id) ?? { last: -Infinity };
    mine.set(id, n);
    if (n.due) continue; // a signal is already due, after this claim
    const send = () => {
      n.due = undefined;
      n.last = Date.now();
      signalPool(deps, id, language);
    };
    const wait = n.last + NUDGE_EVERY_MS - Date.now();
    if (wait <= 0) send();
    // unref: a stopping worker does not wait for it; the pool's own period covers that claim.
    else n.due = setTimeout(send, wait).unref();
  }
}

function signalPool(deps: ActivityDeps, workflowId: string, language: Language): void {
  deps.temporal?.workflow
    .getHandle(workflowId)
    .signal(POOL_SIGNALS.replenish)
    .catch((err: unknown) => {
      note('could not reach the warm pool', { language, error: String(err) });
    });
}

/** The task for a claimed pod, unless it (or an earlier try) already has it: a pod never gets a second task. */
async function handOverUnlessDelivered(
  deps: ActivityDeps,
  pod: string,
  spec: AttemptSpec,
  check: boolean,
): Promise<(() => Promise<Handover>) | undefined> {
  if (check && (await alreadyDelivered(deps.kube, pod, spec))) return undefined;
  return () => deliverTask(deps.kube, pod, spec, attemptNetwork(deps, spec));
}

export const warmSandboxes: SandboxSource = {
  async acquire(deps, spec, taskQueue) {
    const language = spec.request.language;
    if (poolSize(deps, language) === 0 || !fitsPool(spec.request, spec.policy)) return undefined;
    const pool = poolRef(taskQueue, language, spec.policy, deps.launcherSource);
    // With an allow-list, the claim gives the pod its egress (no new pod): the gateway sees it with the claim.
    const claimed = await claimWarmPod(deps.kube, pool, spec, attemptNetwork(deps, spec));
    if (!claimed) return undefined;
    // Replenish now rather than at the pool's next period.
    nudgePools(deps, taskQueue, [language]);
    const pod = claimed.pod.metadata!.name!;
    return {
      kind: 'warm',
      acquiredAt: claimed.at,
      pod,
      // A pod an earlier try claimed may have its task already.
      handOver: await handOverUnlessDelivered(deps, pod, spec, claimed.adopted),
      resumed: claimed.adopted ? { podName: pod } : undefined,
      from: { resourceVersion: claimed.pod.metadata?.resourceVersion, pod: claimed.pod },
    };
  },

  async find(deps, spec, taskQueue) {
    const pool = poolRef(taskQueue, spec.request.language, spec.policy, deps.launcherSource);
    const own = await findClaimedPod(deps.kube, pool, spec);
    if (!own) return undefined;
    const pod = own.metadata!.name!;
    return {
      kind: 'warm',
      acquiredAt: Date.now(),
      pod,
      handOver: await handOverUnlessDelivered(deps, pod, spec, true),
      resumed: { podName: pod },
    };
  },

  async resume(deps, spec, recorded) {
    const pod = recorded.progress.podName!;
    return {
      kind: 'warm',
      acquiredAt: recorded.acquiredAt,
      pod,
      handOver: await handOverUnlessDelivered(deps, pod, spec, true),
      resumed: recorded.progress,
    };
  },
};

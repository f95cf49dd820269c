/**
 * The warm pool in pure terms: which pool serves a request, the pool pod (the same hardened sandbox as a cold
 * Job's pod, started without a program), the one conditional write that claims a pod for an attempt, and the task
 * the launcher receives. Single use: a claimed pod is never marked ready again; after its one program it is deleted.
 */
import { egressMetadata } from './egress';
import type { SandboxNetwork } from './manifests';
import type { V1Pod } from '@kubernetes/client-node';
import { LAUNCHER_INTERPRETER, SANDBOX_DIR, sandboxLanguage } from './languages';
import { hardenedPodSpec, programEnv } from './manifests';
import { ANNOTATIONS, hash16, LABELS, MANAGED_BY, resourceNames } from './names';
import type { ExecutionPolicy } from './policy';
import type { Language } from './types';
import type { ExecutionRequest } from './validate';

export interface PoolConfig {
  /** Pods kept ready per language; 0 turns the pool off. */
  size: number;
  /** A ready pod older than this is replaced (its sandbox is recycled, never reused). */
  maxIdleSeconds: number;
}

/** A pool: one language's ready pods for one task queue's executions. */
export interface PoolRef {
  id: string;
  language: Language;
  /** Hash of everything that shapes the pod: a pod made from another template is never claimed. */
  template: string;
}

export type PoolState = 'ready' | 'claimed';

/** Signals the pool workflow takes: `replenish` after a claim, `configure` with a worker's new pool settings. */
export const POOL_SIGNALS = { replenish: 'replenish', configure: 'configure' } as const;

/** The largest task the launcher accepts: code, files and env with their JSON overhead, with room to spare. */
export const MAX_TASK_BYTES = 4 * 1024 * 1024;

export function poolRef(
  taskQueue: string,
  language: Language,
  policy: ExecutionPolicy,
  launcherSource: string,
): PoolRef {
  // A language that runs in another's sandboxes (TypeScript in JavaScript's) is served by that one's pool.
  language = sandboxLanguage(language);
  const id = `${language}-${hash16(taskQueue).slice(0, 12)}`;
  const template = hash16(JSON.stringify([policy, language, hash16(launcherSource)]));
  return { id, language, template };
}

/** The pool workflow's id: one per task queue and language. */
export function poolWorkflowId(taskQueue: string, language: Language): string {
  return `durable-sandbox-pool-${taskQueue}-${sandboxLanguage(language)}`;
}

export function poolSelector(pool: PoolRef, state?: PoolState): string {
  return [
    `${LABELS.managedBy}=${MANAGED_BY}`,
    `${LABELS.pool}=${pool.id}`,
    ...(state ? [`${LABELS.poolState}=${state}`] : []),
  ].join(',');
}

/**
 * The command of a sandbox whose launcher starts before its task: it waits for one task (`warm`) or one task after
 * another (`session`) on stdin, and ends itself when none comes within `maxIdleSeconds`.
 */
export function waitingLauncher(mode: 'warm' | 'session', launcherSource: string, maxIdleSeconds: number): string[] {
  return [
    LAUNCHER_INTERPRETER,
    '-c',
    launcherSource,
    `--${mode}`,
    '--max-task-bytes',
    String(MAX_TASK_BYTES),
    '--task-dir',
    SANDBOX_DIR,
    '--max-idle-seconds',
    String(maxIdleSeconds),
  ];
}

/** How long after `maxIdleSeconds` an unclaimed pool pod ends itself (its pool replaces it before that if alive). */
export const POOL_IDLE_GRACE_SECONDS = 50;

/** Whether a request can run in a pool pod: the pool's pods have the default limits. */
export function fitsPool(request: Pick<ExecutionRequest, 'cpu' | 'memory'>, policy: ExecutionPolicy): boolean {
  return request.cpu === policy.defaultCpu && request.memory === policy.defaultMemory;
}

/**
 * A pool pod. It idles at most `maxIdleSeconds` (then the pool replaces it); if its pool is gone (no worker serves
 * it), its launcher exits on its own `POOL_IDLE_GRACE_SECONDS` later, which frees the node's CPU and memory (the
 * reconciler deletes the object). The kubelet's deadline stops it even if nothing of ours is left; a claim lowers
 * that deadline to the program's.
 */
export function buildPoolPod(args: {
  pool: PoolRef;
  namespace: string;
  policy: ExecutionPolicy;
  launcherSource: string;
  config: PoolConfig;
  /** The pool workflow, so the reconciler can tell an orphaned pool pod. */
  owner: string;
}): V1Pod {
  const { pool, policy } = args;
  const labels = {
    [LABELS.managedBy]: MANAGED_BY,
    [LABELS.pool]: pool.id,
    [LABELS.poolState]: 'ready',
    [LABELS.template]: pool.template,
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: `ds-pool-${pool.language}-`,
      namespace: args.namespace,
      labels,
      annotations: { [ANNOTATIONS.poolOwner]: args.owner, [ANNOTATIONS.language]: pool.language },
    },
    spec: hardenedPodSpec(policy, {
      image: policy.images[pool.language],
      command: waitingLauncher('warm', args.launcherSource, args.config.maxIdleSeconds + POOL_IDLE_GRACE_SECONDS),
      env: programEnv(pool.language),
      cpu: policy.defaultCpu,
      memory: policy.defaultMemory,
      sandboxVolume: { emptyDir: { sizeLimit: '8Mi' } },
      // Open for more than one attach: a session that claims the pod sends it one run after another. A one-shot
      // task is still the only one read: the launcher closes its stdin after it.
      stdin: 'many',
      activeDeadlineSeconds: args.config.maxIdleSeconds + policy.maxTimeoutSeconds + policy.startupAllowanceSeconds,
    }),
  };
}

/** Seconds since the pod started (by its status), for the claim's deadline. */
export function podAgeSeconds(pod: V1Pod, now: number): number {
  const started = pod.status?.startTime ?? pod.metadata?.creationTimestamp;
  return started ? Math.max(0, Math.ceil((now - new Date(started).getTime()) / 1000)) : 0;
}

/**
 * The claim: one merge patch that carries the pod's observed resourceVersion, so of two claims of the same pod
 * exactly one succeeds (the other gets 409 Conflict). It binds the pod to the attempt (the attempt's labels, so
 * cleanup and the reconciler find it like a Job's pod) and lowers its deadline to the program's.
 */
export function claimPatch(
  pod: V1Pod,
  args: {
    executionId: string;
    attempt: number;
    request: ExecutionRequest;
    policy: ExecutionPolicy;
    now: number;
    /** The attempt's egress: the pod gets it with the claim (its annotation and label; none without). */
    network?: SandboxNetwork;
  },
): object {
  const names = resourceNames(args.executionId, args.attempt);
  const egress = egressMetadata(args.network?.egress);
  const deadline = podAgeSeconds(pod, args.now) + args.request.timeoutSeconds + args.policy.startupAllowanceSeconds;
  return {
    metadata: {
      resourceVersion: pod.metadata!.resourceVersion,
      labels: {
        [LABELS.poolState]: 'claimed',
        [LABELS.execution]: names.executionLabel,
        [LABELS.attempt]: String(args.attempt),
        ...egress.labels,
      },
      annotations: {
        [ANNOTATIONS.executionId]: args.executionId,
        [ANNOTATIONS.language]: args.request.language,
        ...egress.annotations,
      },
    },
    spec: { activeDeadlineSeconds: Math.min(deadline, pod.spec?.activeDeadlineSeconds ?? deadline) },
  };
}

/** Whether a pod is one the claim may take: ready, of the wanted template, running, not on its way out. */
export function claimable(pod: V1Pod, pool: PoolRef): boolean {
  const labels = pod.metadata?.labels ?? {};
  return (
    labels[LABELS.poolState] === 'ready' &&
    labels[LABELS.template] === pool.template &&
    !pod.metadata?.deletionTimestamp &&
    pod.status?.phase === 'Running' &&
    (pod.status.containerStatuses ?? []).every((c) => !!c.state?.running)
  );
}

/** A pod the scheduler found no node for (it waits, holding nothing). */
export function waitsForNode(pod: V1Pod): boolean {
  return (
    pod.status?.phase === 'Pending' &&
    !pod.metadata?.deletionTimestamp &&
    (pod.status.conditions ?? []).some(
      (c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable',
    )
  );
}

/** What the sandbox namespace says about room on the nodes, seen from one pool. */
export interface NodePressure {
  /** Executions' pods (cold Jobs' pods) that wait for a node. */
  executionsWaiting: number;
  /** Other pools' unclaimed pods that wait for a node. */
  otherPoolsWaiting: number;
  /** This pool's unclaimed pods that wait for a node. */
  ownWaiting: V1Pod[];
}

export function nodePressure(pods: V1Pod[], pool: PoolRef): NodePressure {
  const pressure: NodePressure = { executionsWaiting: 0, otherPoolsWaiting: 0, ownWaiting: [] };
  for (const pod of pods) {
    if (!waitsForNode(pod)) continue;
    const labels = pod.metadata?.labels ?? {};
    const unclaimedPoolPod = labels[LABELS.pool] !== undefined && labels[LABELS.poolState] !== 'claimed';
    if (!unclaimedPoolPod) pressure.executionsWaiting++;
    else if (labels[LABELS.pool] === pool.id) pressure.ownWaiting.push(pod);
    else pressure.otherPoolsWaiting++;
  }
  return pressure;
}

/**
 * A pool is spare capacity, never in the way: how many ready pods it may keep and whether it may start more, given
 * the pressure it sees. An execution waiting for a node takes precedence over the whole pool (it gives its ready pods
 * up); another pool waiting shares what room there is (each keeps at most one); and while a pod of its own waits
 * for a node, it starts no more (that pod is withdrawn, so it never gets a node ahead of an execution).
 */
export function poolAllowance(size: number, pressure: NodePressure): { keep: number; create: boolean; why?: string } {
  if (pressure.executionsWaiting > 0)
    return { keep: 0, create: false, why: `${pressure.executionsWaiting} execution(s) wait for a node` };
  if (pressure.ownWaiting.length > 0)
    return { keep: pressure.otherPoolsWaiting > 0 ? Math.min(size, 1) : size, create: false, why: 'no node has room' };
  if (pressure.otherPoolsWaiting > 0)
    return { keep: Math.min(size, 1), create: true, why: 'other pools wait for a node' };
  return { keep: size, create: true };
}

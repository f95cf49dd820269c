/**
 * The pool's one step, run by its workflow (workflows/warm-pool.ts) after every claim and on a period: look at the
 * pool's pods, delete the ready ones that are too old, of another template or dead, and create what is missing.
 * Counting from a fresh list each time keeps a retried step from ever making more than the pool's size; deleting
 * only with the observed resourceVersion as precondition keeps it from ever deleting a pod claimed meanwhile.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { Context } from '@temporalio/activity';
import { METRICS } from '../core/metrics';
import { LABELS, MANAGED_BY } from '../core/names';
import { buildPoolPod, nodePressure, podAgeSeconds, poolAllowance, poolRef, type PoolConfig } from '../core/pool';
import type { ExecutionPolicy } from '../core/policy';
import type { Language } from '../core/types';
import type { ActivityDeps } from './deps';
import { kubeCall } from './kube';
import { compactLauncher } from './launcher-program';
import { retirePoolPod } from './sandbox-objects';

export interface PoolInput {
  taskQueue: string;
  language: Language;
  policy: ExecutionPolicy;
  config: PoolConfig;
  /** The pool workflow's id, written on its pods. */
  owner: string;
}

export interface PoolReport {
  /** Running and waiting for a program. */
  ready: number;
  /** Created, not running yet. */
  starting: number;
  /** Claimed by an execution (deleted by its cleanup). */
  claimed: number;
  created: number;
  deleted: { pod: string; why: string }[];
  at: number;
}

function whyStale(pod: V1Pod, template: string, config: PoolConfig, now: number): string | undefined {
  const phase = pod.status?.phase;
  if (phase === 'Failed' || phase === 'Succeeded') return `ended (${pod.status?.reason ?? phase})`;
  if (pod.metadata?.labels?.[LABELS.template] !== template) return 'made from an older template';
  const age = podAgeSeconds(pod, now);
  if (age > config.maxIdleSeconds) return `idle for ${age} s`;
  return undefined;
}

export function warmPoolActivities({ kube, launcherSource }: ActivityDeps) {
  return {
    async maintainPool(input: PoolInput): Promise<PoolReport> {
      const { policy, config } = input;
      const namespace = policy.namespace;
      const pool = poolRef(input.taskQueue, input.language, policy, launcherSource);
      // Every sandbox pod of the namespace, not only the pool's: whether executions or other pools wait for a node.
      const list = await kubeCall(`list the ${pool.id} pool`, () =>
        kube.core.listNamespacedPod({ namespace, labelSelector: `${LABELS.managedBy}=${MANAGED_BY}` }),
      );
      const now = Date.now();
      const report: PoolReport = { ready: 0, starting: 0, claimed: 0, created: 0, deleted: [], at: now };
      const keep: V1Pod[] = [];
      const doomed: { pod: V1Pod; why: string }[] = [];
      const pressure = nodePressure(list.items, pool);
      const allowance = poolAllowance(config.size, pressure);
      const waiting = new Set(pressure.ownWaiting);
      for (const pod of list.items) {
        if (pod.metadata?.labels?.[LABELS.pool] !== pool.id) continue;
        if (waiting.has(pod)) {
          doomed.push({ pod, why: `waits for a node (${allowance.why ?? 'no room'}): withdrawn` });
          continue;
        }
        const state = pod.metadata?.labels?.[LABELS.poolState];
        if (state === 'claimed') {
          report.claimed++;
          continue;
        }
        if (pod.metadata?.deletionTimestamp) continue;
        if (state !== 'ready') {
          // Retiring: a round that died between marking it and deleting it.
          doomed.push({ pod, why: 'retiring' });
          continue;
        }
        const why = whyStale(pod, pool.template, config, now);
        if (why) doomed.push({ pod, why });
        else keep.push(pod);
      }
      // Beyond the size (it shrank): the oldest go first.
      keep.sort((a, b) => podAgeSeconds(b, now) - podAgeSeconds(a, now));
      while (keep.length > config.size) doomed.push({ pod: keep.shift()!, why: `more than the pool's ${config.size}` });
      // Under pressure the pool gives way: the oldest pods go first.
      while (keep.length > allowance.keep) doomed.push({ pod: keep.shift()!, why: `giving way: ${allowance.why}` });
      for (const { pod, why } of doomed) {
        // Never one claimed meanwhile: a claim and a retirement cannot both succeed.
        if (await retirePoolPod(kube, namespace, pod)) report.deleted.push({ pod: pod.metadata!.name!, why });
      }
      for (const pod of keep) {
        if (pod.status?.phase === 'Running') report.ready++;
        else report.starting++;
      }
      for (let n = keep.length; allowance.create && n < allowance.keep; n++) {
        const body = buildPoolPod({
          pool,
          namespace,
          policy,
          launcherSource: compactLauncher(launcherSource),
          config,
          owner: input.owner,
        });
        await kubeCall(`create a ${pool.id} pool pod`, () => kube.core.createNamespacedPod({ namespace, body }));
        report.created++;
        report.starting++;
      }
      recordPool(input.language, report);
      return report;
    },
  };
}

/** The pool's gauges (pods by state after this round) and what this round created and deleted. */
function recordPool(language: string, report: PoolReport): void {
  const meter = Context.current().metricMeter;
  const pods = meter.createGauge(METRICS.poolPods, 'int', 'pods', 'warm pool pods by state');
  for (const state of ['ready', 'starting', 'claimed'] as const) pods.set(report[state], { language, state });
  meter.createCounter(METRICS.poolCreated, 'pods', 'warm pool pods created').add(report.created, { language });
  meter.createCounter(METRICS.poolDeleted, 'pods', 'warm pool pods retired').add(report.deleted.length, { language });
}

/**
 * The run step of an attempt: creates its ConfigMap and hardened Job (adopting them after a retry), then watches the
 * attempt to its end (attempt-watch.ts) while following the container's log, so it ends when the launcher's trailer
 * arrives instead of when the kubelet next reports. Heartbeats carry where it stands and the output so far (live
 * output for clients); a retry on another worker resumes from them and never creates the Job a second time.
 */
import type { V1Job } from '@kubernetes/client-node';
import { Context, log } from '@temporalio/activity';
import type { AttemptSpec, RunHeartbeat, RunResult } from '../core/attempt';
import { collectedOutput } from '../core/output';
import { AttemptWatch } from './attempt-watch';
import type { ActivityDeps } from './deps';
import { createCodeConfigMap, createSandboxJob, makeConfigMapDependent } from './sandbox-objects';

export function runSandboxActivity(deps: ActivityDeps) {
  return async function runSandbox(spec: AttemptSpec): Promise<RunResult> {
    const ctx = Context.current();
    const resumed = ctx.info.heartbeatDetails as RunHeartbeat | undefined;
    let jobCreatedAt = resumed?.jobCreatedAt;
    let job: V1Job | undefined;
    let ownership: Promise<void> | undefined;
    let adopted = false;
    if (jobCreatedAt === undefined) {
      // The ConfigMap first: the pod mounts it, and must not wait on a retry of the mount.
      await createCodeConfigMap(deps, spec);
      const created = await createSandboxJob(deps, spec);
      jobCreatedAt = created.createdAt;
      job = created.object;
      adopted = created.adopted;
      ctx.heartbeat({ attempt: spec.attempt, progress: {}, jobCreatedAt });
      // A backstop only (the Job's TTL then takes the ConfigMap too), so off the critical path.
      ownership = makeConfigMapDependent(deps.kube, spec.policy.namespace, created).catch((err: unknown) => {
        log.warn('could not make the ConfigMap a dependent of its Job; cleanup and the reconciler still remove it', {
          error: err instanceof Error ? err.message : String(err),
        });
      });
    }
    const watch = new AttemptWatch(deps.kube, spec, ctx, {
      followLog: true,
      job,
      jobCreatedAt,
      // An adopted Job was made by an earlier try that died before its heartbeat: resume as from an empty one.
      resumed: resumed?.progress ?? (adopted ? {} : undefined),
    });
    const { end, progress, output } = await watch.run();
    await ownership;
    return { end, progress, jobCreatedAt, output: collectedOutput(output!, Date.now()) };
  };
}

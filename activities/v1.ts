/**
 * The steps of the workflow as it was before the fast path (workflows/v1/), kept so executions started then can
 * finish: create the ConfigMap, create the Job, await the attempt's end by the kubelet's status. They share every
 * piece with today's run step; remove them with workflows/v1/.
 */
import { Context } from '@temporalio/activity';
import type { AttemptSpec, AwaitResult, Created } from '../core/attempt';
import type { PodProgress } from '../core/classify';
import { AttemptWatch } from './attempt-watch';
import type { ActivityDeps } from './deps';
import { createCodeConfigMap, createSandboxJob, makeConfigMapDependent } from './sandbox-objects';

export function v1Activities(deps: ActivityDeps) {
  return {
    async createCodeConfigMap(spec: AttemptSpec): Promise<Created> {
      return { ...(await createCodeConfigMap(deps, spec)), at: Date.now() };
    },

    async createJob(spec: AttemptSpec): Promise<Created> {
      const job = await createSandboxJob(deps, spec);
      await makeConfigMapDependent(deps.kube, spec.policy.namespace, job);
      return { name: job.name, adopted: job.adopted, at: Date.now() };
    },

    async awaitCompletion(spec: AttemptSpec): Promise<AwaitResult> {
      const ctx = Context.current();
      const watch = new AttemptWatch(
        deps.kube,
        spec,
        {
          heartbeat: (d) => ctx.heartbeat(d.progress),
          cancellationSignal: ctx.cancellationSignal,
          cancelled: ctx.cancelled,
        },
        { followLog: false, resumed: ctx.info.heartbeatDetails as PodProgress | undefined },
      );
      const { end, progress } = await watch.run();
      return { end, progress };
    },
  };
}

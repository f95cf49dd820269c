/**
 * The run step of an attempt: gets it a sandbox (sandboxes.ts: a claimed warm pool pod when one is ready and the
 * request fits the pool, else a ConfigMap and hardened Job made for it), hands it the task, then watches the
 * attempt to its end (attempt-watch.ts) while following the container's log, so it ends when the launcher's trailer
 * arrives instead of when the kubelet next reports. Heartbeats carry where it stands and the output so far (live
 * output for clients); a retry on another worker resumes from them and never gets a second sandbox or hands a
 * sandbox a second task.
 */
import { Context } from '@temporalio/activity';
import type { AttemptSpec, RunHeartbeat, RunResult } from '../core/attempt';
import { resourceNames } from '../core/names';
import { collectedOutput } from '../core/output';
import { sandboxTraits } from '../core/sandbox';
import { attemptAttributes } from '../core/trace';
import { AttemptWatch } from './attempt-watch';
import type { ActivityDeps } from './deps';
import {
  acquireSandbox,
  findSandbox,
  resumeSandbox,
  STARTING_CHECK_MS,
  type Handover,
  type Sandbox,
} from './sandboxes';
import { recordConfirmed } from './record';
import { networkReport } from './egress';
import { attemptEgressId } from '../core/egress';
import { deleteAttemptObjects } from './sandbox-objects';
import { annotateSpan } from './trace';
import { nudgePools } from './warm-sandbox';

export function runSandboxActivity(deps: ActivityDeps) {
  return async function runSandbox(spec: AttemptSpec): Promise<RunResult> {
    const ctx = Context.current();
    const earlier = ctx.info.heartbeatDetails as RunHeartbeat | undefined;
    const taskQueue = ctx.info.taskQueue;
    let got: Sandbox;
    if (earlier?.acquiredAt !== undefined) {
      got = await resumeSandbox(deps, spec, { ...earlier, acquiredAt: earlier.acquiredAt });
    } else {
      // A retry whose predecessor died before its first heartbeat carries on with what that one got (found by its
      // name or labels), and only then gets one itself.
      const found = ctx.info.attempt > 1 ? await findSandbox(deps, spec, taskQueue) : undefined;
      got = found ?? (await acquireSandbox(deps, spec, taskQueue));
      // An earlier try that found the pool empty may have made the ConfigMap of a cold sandbox and died before its
      // Job: this attempt now runs in a sandbox with no objects of its own, whose cleanup deletes none, so it goes now.
      // Also when the sandbox was found rather than got: the try that claimed it may have died before this delete.
      if (ctx.info.attempt > 1 && sandboxTraits(got.kind).objects.length === 0) {
        await deleteAttemptObjects(
          deps.kube,
          spec.policy.namespace,
          resourceNames(spec.executionId, spec.attempt).name,
          'ConfigMap',
        );
      }
      const details: RunHeartbeat = {
        attempt: spec.attempt,
        sandbox: got.kind,
        acquiredAt: got.acquiredAt,
        progress: got.pod ? { podName: got.pod } : {},
      };
      // A task is handed over only once Temporal has recorded which sandbox it goes to: a retry then never hands the
      // attempt's program to a second one (one never told is harmless: it ran nothing).
      if (got.handOver) await recordConfirmed(deps, ctx, details);
      else ctx.heartbeat(details);
    }
    const traced = {
      executionId: spec.executionId,
      attempt: spec.attempt,
      namespace: spec.policy.namespace,
      sandbox: got.kind,
      ...(sandboxTraits(got.kind).objects.length > 0
        ? { objects: resourceNames(spec.executionId, spec.attempt).name }
        : {}),
    };
    annotateSpan(attemptAttributes({ ...traced, pod: got.pod }));
    const watch = new AttemptWatch(deps.kube, spec, ctx, {
      followLog: true,
      sandbox: got.kind,
      job: got.job,
      acquiredAt: got.acquiredAt,
      resumed: got.resumed,
      from: got.from,
      onWaitsForNode: () => nudgePools(deps, taskQueue),
      record: deps.recordWatch,
    });
    let handover: Handover | undefined;
    const whileStarting = got.whileStarting;
    const starting = whileStarting
      ? setInterval(() => {
          if (watch.progress.containerStartedAt === undefined) whileStarting().catch(() => undefined);
        }, STARTING_CHECK_MS)
      : undefined;
    // The step's own awaits keep the process alive while it runs; this check never should by itself.
    starting?.unref();
    try {
      const running = watch.run();
      running.catch(() => undefined);
      if (got.handOver) handover = await got.handOver();
      const { end, progress, output } = await running;
      await got.settled;
      annotateSpan(attemptAttributes({ ...traced, pod: progress.podName ?? got.pod }));
      // With egress: what the program reached and was refused (the id is this attempt's alone: all of its records).
      const rules = spec.request.egress;
      const network = rules?.length
        ? await networkReport(deps, attemptEgressId(spec.executionId, spec.attempt), rules, 0)
        : undefined;
      return {
        end,
        progress,
        acquiredAt: got.acquiredAt,
        sandbox: got.kind,
        output: collectedOutput(output!, Date.now()),
        ...(network ? { network } : {}),
      };
    } finally {
      clearInterval(starting);
      watch.stop();
      handover?.close();
    }
  };
}

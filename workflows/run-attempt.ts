/**
 * One attempt of an execution: the run step creates its objects and follows the program to its end; its cleanup
 * is separate, so the execution can answer with its result first and clean up after. Cleanup always runs, as
 * compensation, in a scope that cancellation cannot interrupt.
 */
import { ActivityFailure, CancellationScope, isCancellation, patched } from '@temporalio/workflow';
import type { AttemptEnd, AttemptRef, AttemptSpec, CollectedOutput, RunResult } from '../core/attempt';
import type { NetworkReport } from '../core/egress';
import { resourceNames } from '../core/names';
import { capsOf, type ExecutionPolicy } from '../core/policy';
import { sandboxTraits, type SandboxKind } from '../core/sandbox';
import type { KubernetesRefs } from '../core/types';
import type { ExecutionRequest } from '../core/validate';
import { cleanup, collectOutput, runSandbox } from './activities';
import type { Progress } from './progress';
import { stepFailure } from './step-failure';

/**
 * A cancel that came while the run step was lost (its worker died: the step ends by its heartbeat timeout, which
 * Temporal reports as the step's failure, not a cancellation) ends the attempt as cancelled, as any other cancel.
 */
export const CANCEL_WHILE_LOST = 'cancel-while-lost';

export interface Execution {
  executionId: string;
  request: ExecutionRequest;
  policy: ExecutionPolicy;
  progress: Progress;
}

export interface AttemptOutcome {
  end: AttemptEnd;
  output?: CollectedOutput;
  refs: KubernetesRefs;
  sandbox?: SandboxKind;
  network?: NetworkReport;
}

export async function runAttempt(exec: Execution, attempt: number): Promise<AttemptOutcome> {
  const { executionId, request, policy, progress } = exec;
  const spec: AttemptSpec = { executionId, attempt, request, policy };
  const { name } = resourceNames(executionId, attempt);
  const refs: KubernetesRefs = {
    namespace: policy.namespace,
    job: name,
    configMap: name,
    image: policy.images[request.language],
  };
  try {
    progress.detail(`running Job ${name}`, attempt);
    const run = await runSandbox(spec, name);
    Object.assign(refs, { pod: run.progress.podName, node: run.progress.nodeName });
    const { objects } = sandboxTraits(run.sandbox);
    if (!objects.includes('job')) delete refs.job;
    if (!objects.includes('configMap')) delete refs.configMap;
    markPhases(progress, run, attempt);
    return {
      end: run.end,
      output: run.output,
      refs,
      sandbox: run.sandbox,
      ...(run.network ? { network: run.network } : {}),
    };
  } catch (err) {
    const cancelled =
      isCancellation(err) ||
      (err instanceof ActivityFailure && CancellationScope.current().consideredCancelled && patched(CANCEL_WHILE_LOST));
    if (cancelled) {
      // Keep whatever the program printed so far; cleanup then stops it.
      const caps = capsOf(policy);
      const output = await CancellationScope.nonCancellable(() =>
        collectOutput(attemptRef(exec, attempt), undefined, caps),
      );
      progress.mark('outputCollected', output.at, attempt);
      return { end: { kind: 'cancelled' }, output, refs };
    }
    if (err instanceof ActivityFailure) return { end: { kind: 'infra', error: stepFailure(err) }, refs };
    throw err;
  }
}

/** Deletes the attempt's objects and waits until its pod is gone; retried until it succeeds. */
export async function cleanupAttempt(exec: Execution, attempt: number, sandbox?: SandboxKind): Promise<void> {
  const { name } = resourceNames(exec.executionId, attempt);
  exec.progress.detail(`cleaning up ${name}`, attempt);
  const ref = { ...attemptRef(exec, attempt), ...(sandbox ? { sandbox } : {}) };
  const cleaned = await CancellationScope.nonCancellable(() => cleanup(ref, name));
  exec.progress.mark('cleanedUp', cleaned.at, attempt);
}

function attemptRef(exec: Execution, attempt: number): AttemptRef {
  return { executionId: exec.executionId, attempt, namespace: exec.policy.namespace };
}

function markPhases(progress: Progress, run: RunResult, attempt: number): void {
  const p = run.progress;
  const t = run.output.trailer;
  const sandbox = sandboxTraits(run.sandbox);
  progress.mark(sandbox.acquiredPhase, run.acquiredAt, attempt);
  if (sandbox.scheduledForAttempt) progress.mark('podScheduled', p.scheduledAt, attempt);
  // The launcher's own clock times the program exactly; the watch's observations are the fallback.
  progress.mark('containerStarted', t?.startedAt || p.containerStartedAt, attempt);
  progress.mark('containerFinished', t?.finishedAt || p.containerFinishedAt, attempt);
  progress.mark('outputCollected', run.output.at, attempt);
}

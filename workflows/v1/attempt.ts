/**
 * One attempt of an execution before the fast path: the five durable steps against one set of Kubernetes objects.
 * Cleanup always runs, as compensation, in a scope that cancellation cannot interrupt. Unchanged; see execute-code.ts.
 */
import { ActivityFailure, CancellationScope, isCancellation, sleep } from '@temporalio/workflow';
import type { AttemptEnd, AttemptRef, AttemptSpec, AwaitResult, CollectedOutput } from '../../core/attempt';
import { activeDeadlineSeconds } from '../../core/manifests';
import { resourceNames } from '../../core/names';
import type { ExecutionPolicy } from '../../core/policy';
import type { KubernetesRefs } from '../../core/types';
import type { ExecutionRequest } from '../../core/validate';
import { awaitCompletion, cleanup, collectOutput, createCodeConfigMap, createJob } from './activities';
import type { Progress } from '../progress';
import { stepFailure } from '../step-failure';

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
}

/** Beyond the Job's own deadline, how long the workflow waits for the await step before calling it a timeout. */
const WORKFLOW_DEADLINE_GRACE_MS = 30_000;

export async function runAttempt(exec: Execution, attempt: number): Promise<AttemptOutcome> {
  const { executionId, request, policy, progress } = exec;
  const spec: AttemptSpec = { executionId, attempt, request, policy };
  const ref: AttemptRef = { executionId, attempt, namespace: policy.namespace };
  const { name } = resourceNames(executionId, attempt);
  const refs: KubernetesRefs = {
    namespace: policy.namespace,
    job: name,
    configMap: name,
    image: policy.images[request.language],
  };
  const caps = { stdoutCapBytes: policy.stdoutCapBytes, stderrCapBytes: policy.stderrCapBytes };
  let awaited: AwaitResult | undefined;
  try {
    progress.detail(`creating ConfigMap and Job ${name}`, attempt);
    await createCodeConfigMap(spec, name);
    progress.mark('jobCreated', (await createJob(spec, name)).at, attempt);
    progress.detail(`waiting for Job ${name}`, attempt);
    awaited = await awaitWithDeadline(spec, name);
    Object.assign(refs, { pod: awaited.progress.podName, node: awaited.progress.nodeName });
    const output = await collectOutput(ref, awaited.progress.podName, caps);
    markPodPhases(progress, awaited, output, attempt);
    progress.mark('outputCollected', output.at, attempt);
    return { end: awaited.end, output, refs };
  } catch (err) {
    if (isCancellation(err)) {
      // Keep whatever the program printed so far, then let cleanup stop it.
      const output = await CancellationScope.nonCancellable(() => collectOutput(ref, awaited?.progress.podName, caps));
      progress.mark('outputCollected', output.at, attempt);
      return { end: { kind: 'cancelled' }, output, refs };
    }
    if (err instanceof ActivityFailure) return { end: { kind: 'infra', error: stepFailure(err) }, refs };
    throw err;
  } finally {
    const cleaned = await CancellationScope.nonCancellable(() => cleanup(ref, name));
    progress.mark('cleanedUp', cleaned.at, attempt);
  }
}

/** Races the await step against a workflow timer, so a stuck watch can never outlive the Job's deadline. */
async function awaitWithDeadline(spec: AttemptSpec, name: string): Promise<AwaitResult> {
  const deadlineMs = activeDeadlineSeconds(spec.request, spec.policy) * 1000 + WORKFLOW_DEADLINE_GRACE_MS;
  const scope = new CancellationScope();
  const step = scope.run(() => awaitCompletion(spec, name));
  const timer = scope.run(() => sleep(deadlineMs));
  step.catch(() => undefined);
  timer.catch(() => undefined);
  const winner = await Promise.race([step, timer.then(() => undefined)]);
  scope.cancel();
  return winner ?? { end: { kind: 'deadline' }, progress: {} };
}

function markPodPhases(progress: Progress, awaited: AwaitResult, output: CollectedOutput, attempt: number): void {
  const p = awaited.progress;
  // The launcher's own clock times the program exactly; the watch's observations are the fallback.
  progress.mark('podScheduled', p.scheduledAt, attempt);
  progress.mark('containerStarted', output.trailer?.startedAt || p.containerStartedAt, attempt);
  progress.mark('containerFinished', output.trailer?.finishedAt || p.containerFinishedAt, attempt);
}

/**
 * The workflow's handles on its activities, each with the timeouts and retries its step needs. Kubernetes calls
 * retry with backoff for as long as the cluster may heal; cleanup retries until it succeeds.
 */
import {
  ActivityCancellationType,
  proxyActivities,
  proxyLocalActivities,
  type RetryPolicy,
} from '@temporalio/workflow';
import type { SandboxActivities } from '../activities';
import type { AttemptRef, AttemptSpec, CleanupResult, CollectedOutput, RunResult } from '../core/attempt';
import { activeDeadlineSeconds } from '../core/manifests';
import type { Caps } from '../core/output';

const KUBE_RETRY: RetryPolicy = { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s' };
/** A dead worker is noticed within this long and its step resumes elsewhere. */
export const HEARTBEAT_TIMEOUT = '10s';

const local = proxyLocalActivities<SandboxActivities>({ startToCloseTimeout: '10s', retry: KUBE_RETRY });
const remote = proxyActivities<SandboxActivities>({
  startToCloseTimeout: '30s',
  scheduleToCloseTimeout: '5m',
  retry: KUBE_RETRY,
});

export const getExecutionPolicy = local.getExecutionPolicy;

/**
 * Creates the attempt's objects and follows it to its end. The step ends the attempt itself at the Job's deadline
 * plus a grace; the timeouts here are the backstop. On cancellation the workflow waits until the step has stopped,
 * so cleanup never races a create.
 */
export function runSandbox(spec: AttemptSpec, name: string): Promise<RunResult> {
  const seconds = activeDeadlineSeconds(spec.request, spec.policy) + 60;
  return remote.runSandbox.executeWithOptions(
    {
      startToCloseTimeout: `${seconds}s`,
      scheduleToCloseTimeout: `${Math.max(seconds * 2, 300)}s`,
      heartbeatTimeout: HEARTBEAT_TIMEOUT,
      retry: KUBE_RETRY,
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      summary: `run Job ${name}`,
    },
    [spec],
  );
}

export function collectOutput(ref: AttemptRef, podName: string | undefined, caps: Caps): Promise<CollectedOutput> {
  return remote.collectOutput.executeWithOptions(
    {
      startToCloseTimeout: '15s',
      scheduleToCloseTimeout: '5m',
      retry: KUBE_RETRY,
      summary: `collect output of ${podName ?? "the attempt's pod"}`,
    },
    [{ ...ref, podName, caps }],
  );
}

export function cleanup(ref: AttemptRef, name: string): Promise<CleanupResult> {
  return remote.cleanup.executeWithOptions(
    {
      startToCloseTimeout: '90s',
      heartbeatTimeout: HEARTBEAT_TIMEOUT,
      retry: { ...KUBE_RETRY, maximumInterval: '30s' },
      summary: `clean up ${name}`,
    },
    [ref],
  );
}

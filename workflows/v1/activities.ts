/**
 * The activities of the pre-fast-path workflow, with the options it always used (see execute-code.ts).
 */
import { proxyActivities, proxyLocalActivities, type ActivityOptions, type RetryPolicy } from '@temporalio/workflow';
import type { SandboxActivities } from '../../activities';
import type { AttemptRef, AttemptSpec, AwaitResult, CleanupResult, CollectedOutput, Created } from '../../core/attempt';
import { activeDeadlineSeconds } from '../../core/manifests';
import type { Caps } from '../../core/output';

const KUBE_RETRY: RetryPolicy = { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s' };
/** A dead worker is noticed within this long and its await step resumes elsewhere. */
export const HEARTBEAT_TIMEOUT = '10s';

const local = proxyLocalActivities<SandboxActivities>({ startToCloseTimeout: '10s', retry: KUBE_RETRY });
const remote = proxyActivities<SandboxActivities>({
  startToCloseTimeout: '30s',
  scheduleToCloseTimeout: '5m',
  retry: KUBE_RETRY,
});

const CREATE: ActivityOptions = { startToCloseTimeout: '15s', scheduleToCloseTimeout: '5m', retry: KUBE_RETRY };

export const getExecutionPolicy = local.getExecutionPolicy;

export function createCodeConfigMap(spec: AttemptSpec, name: string): Promise<Created> {
  return remote.createCodeConfigMap.executeWithOptions({ ...CREATE, summary: `create ConfigMap ${name}` }, [spec]);
}

export function createJob(spec: AttemptSpec, name: string): Promise<Created> {
  return remote.createJob.executeWithOptions({ ...CREATE, summary: `create Job ${name}` }, [spec]);
}

export function awaitCompletion(spec: AttemptSpec, name: string): Promise<AwaitResult> {
  const seconds = activeDeadlineSeconds(spec.request, spec.policy) + 60;
  return remote.awaitCompletion.executeWithOptions(
    {
      startToCloseTimeout: `${seconds}s`,
      scheduleToCloseTimeout: `${seconds * 2}s`,
      heartbeatTimeout: HEARTBEAT_TIMEOUT,
      retry: KUBE_RETRY,
      summary: `await Job ${name}`,
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

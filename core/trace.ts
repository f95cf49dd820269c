/**
 * The attributes an execution's spans carry (see worker/tracing.ts): the execution, and the Kubernetes objects each
 * step made or touched, named as OpenTelemetry's semantic conventions name them where they have a name.
 */
import type { SandboxKind } from './sandbox';

export const TRACE_ATTRIBUTES = {
  executionId: 'durable_sandbox.execution.id',
  attempt: 'durable_sandbox.attempt',
  /** `warm` (a claimed pool pod) or `cold` (a Job made for the attempt). */
  sandbox: 'durable_sandbox.sandbox',
  status: 'durable_sandbox.status',
  namespace: 'k8s.namespace.name',
  job: 'k8s.job.name',
  configMap: 'durable_sandbox.configmap.name',
  pod: 'k8s.pod.name',
} as const;

export type TraceAttributes = Record<string, string | number>;

/** The attributes of one attempt's step: what is known of it (unknown names are left out). */
export function attemptAttributes(a: {
  executionId: string;
  attempt: number;
  namespace: string;
  sandbox?: SandboxKind;
  /** The Job's and the ConfigMap's name (cold). */
  objects?: string;
  pod?: string;
}): TraceAttributes {
  const out: TraceAttributes = {
    [TRACE_ATTRIBUTES.executionId]: a.executionId,
    [TRACE_ATTRIBUTES.attempt]: a.attempt,
    [TRACE_ATTRIBUTES.namespace]: a.namespace,
  };
  if (a.sandbox) out[TRACE_ATTRIBUTES.sandbox] = a.sandbox;
  if (a.objects) {
    out[TRACE_ATTRIBUTES.job] = a.objects;
    out[TRACE_ATTRIBUTES.configMap] = a.objects;
  }
  if (a.pod) out[TRACE_ATTRIBUTES.pod] = a.pod;
  return out;
}

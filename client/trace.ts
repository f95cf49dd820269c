/**
 * The client's spans, through the global OpenTelemetry tracer provider (a no-op until the application registers
 * one): `executeCode` around each execution, and Temporal's client interceptor for the calls under it.
 */
import { SpanStatusCode, trace } from '@opentelemetry/api';
import type { ClientInterceptors } from '@temporalio/client';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry/lib/client';
import { TRACE_ATTRIBUTES } from '../core/trace';
import type { ExecutionResult } from '../core/types';

export function tracingInterceptors(): ClientInterceptors {
  return { workflow: [new OpenTelemetryWorkflowClientInterceptor()] };
}

/** Runs `fn` in a span named `name` for the execution; its status and result's status end up on the span. */
export async function inSpan(
  name: string,
  executionId: string,
  fn: () => Promise<ExecutionResult>,
): Promise<ExecutionResult> {
  const tracer = trace.getTracer('durable-sandbox');
  return tracer.startActiveSpan(name, { attributes: { [TRACE_ATTRIBUTES.executionId]: executionId } }, async (span) => {
    try {
      const result = await fn();
      span.setAttribute(TRACE_ATTRIBUTES.status, result.status);
      return result;
    } catch (err) {
      span.recordException(err instanceof Error ? err : String(err));
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

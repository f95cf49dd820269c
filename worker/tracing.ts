/**
 * Traces, off by default. The standard OpenTelemetry variables turn them on: `OTEL_TRACES_EXPORTER=otlp` (or
 * `console`), or an `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; the OTLP exporter reads the
 * rest of its `OTEL_EXPORTER_OTLP_*` settings itself; `OTEL_SERVICE_NAME` names the service. Temporal's
 * OpenTelemetry interceptors carry the trace from the client (`executeCode`) through the workflow into each activity,
 * where the steps add the execution id and the names of the Kubernetes objects (core/trace.ts).
 */
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, ConsoleSpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import {
  makeWorkflowExporter,
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
} from '@temporalio/interceptors-opentelemetry';
import type { WorkerOptions } from '@temporalio/worker';
import { ConfigError } from './config';

export interface Tracing {
  resource: Resource;
  spanProcessor: SpanProcessor;
  /** Flushes what is buffered and stops exporting. */
  shutdown(): Promise<void>;
}

/** The exporter the environment asks for, or undefined: tracing is off. */
export function traceExporterFromEnv(env: NodeJS.ProcessEnv = process.env): 'otlp' | 'console' | undefined {
  const named = env.OTEL_TRACES_EXPORTER?.trim().toLowerCase();
  if (named === 'none') return undefined;
  if (named === 'otlp' || named === 'console') return named;
  if (named) throw new ConfigError(`OTEL_TRACES_EXPORTER=${named}: one of otlp, console, none`);
  return env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ? 'otlp' : undefined;
}

/**
 * Registers a global tracer provider exporting through `spanProcessor` (client and activity spans use the global
 * one; workflow spans reach the same processor through a sink).
 */
export function startTracing(spanProcessor: SpanProcessor, serviceName: string): Tracing {
  const resource = Resource.default().merge(new Resource({ 'service.name': serviceName }));
  const provider = new NodeTracerProvider({ resource, spanProcessors: [spanProcessor] });
  provider.register();
  return { resource, spanProcessor, shutdown: () => provider.shutdown() };
}

/** Tracing as the environment configures it (OTEL_SERVICE_NAME over `serviceName`), started; undefined when off. */
export function tracingFromEnv(serviceName: string, env: NodeJS.ProcessEnv = process.env): Tracing | undefined {
  const exporter = traceExporterFromEnv(env);
  if (!exporter) return undefined;
  return startTracing(
    new BatchSpanProcessor(exporter === 'otlp' ? new OTLPTraceExporter() : new ConsoleSpanExporter()),
    env.OTEL_SERVICE_NAME || serviceName,
  );
}

/** The workflow interceptors' module: part of the workflow bundle when tracing is on. */
export function tracingWorkflowModules(): string[] {
  return [require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors')];
}

/**
 * The worker's share: spans for workflows (exported through a sink) and activities, and trace context onwards. A
 * worker given a prebuilt workflow bundle has the workflow interceptors bundled instead (`tracingWorkflowModules`).
 */
export function tracingWorkerOptions(
  t: Tracing,
  { prebundled = false }: { prebundled?: boolean } = {},
): Pick<WorkerOptions, 'interceptors' | 'sinks'> {
  return {
    interceptors: {
      ...(prebundled ? {} : { workflowModules: tracingWorkflowModules() }),
      activity: [
        (ctx) => ({
          inbound: new OpenTelemetryActivityInboundInterceptor(ctx),
          outbound: new OpenTelemetryActivityOutboundInterceptor(ctx),
        }),
      ],
      client: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] },
    },
    sinks: { exporter: makeWorkflowExporter(t.spanProcessor, t.resource) },
  };
}

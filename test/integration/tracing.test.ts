/**
 * Traces on the real stack: with tracing on (here the OpenTelemetry SDK's in-memory exporter), each execution is one
 * trace, from the client's `executeCode` through the workflow to its run and cleanup steps, and the steps' spans
 * name the execution and the Kubernetes objects it used.
 */
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { resourceNames } from '../../core/names';
import { TRACE_ATTRIBUTES } from '../../core/trace';
import { startTracing, traceExporterFromEnv, type Tracing } from '../../worker/tracing';
import { eventually, SANDBOX_NAMESPACE, startWorker, uniqueId, type TestWorker } from '../helpers/stack';

jest.setTimeout(180_000);
const exporter = new InMemorySpanExporter();
let tracing: Tracing;
let w: TestWorker;

beforeAll(async () => {
  tracing = startTracing(new SimpleSpanProcessor(exporter), 'durable-sandbox-test');
  w = await startWorker({}, { tracing });
});
afterAll(async () => {
  await w?.stop();
  await tracing?.shutdown();
});

const spansOf = (traceId: string) => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
const named = (spans: ReadableSpan[], name: string) => spans.filter((s) => s.name === name);

test('each execution is one trace from executeCode to cleanup, naming its Job, ConfigMap and pod', async () => {
  const runs = [
    { executionId: uniqueId('trace-a'), code: 'print(1)', status: 'succeeded' },
    { executionId: uniqueId('trace-b'), code: 'import sys\nsys.exit(3)', status: 'failed' },
  ];
  const traceIds: string[] = [];
  for (const r of runs) {
    const result = await w.client.executeCode({ code: r.code }, { executionId: r.executionId });
    expect(result.status).toBe(r.status);
    await w.temporal.workflow.getHandle(r.executionId).result();
    const root = exporter
      .getFinishedSpans()
      .find((s) => s.name === 'executeCode' && s.attributes[TRACE_ATTRIBUTES.executionId] === r.executionId);
    expect(root).toBeDefined();
    expect(root!.parentSpanId).toBeUndefined();
    expect(root!.attributes[TRACE_ATTRIBUTES.status]).toBe(r.status);
    const traceId = root!.spanContext().traceId;
    traceIds.push(traceId);
    // Workflow spans reach the exporter through a sink, after the workflow task that ends them.
    const spans = await eventually(
      async () => spansOf(traceId),
      (s) => named(s, 'RunActivity:cleanup').length > 0 && named(s, 'RunWorkflow:executeCode').length > 0,
      30_000,
    );
    // One tree: every span but the root has its parent in this trace.
    const ids = new Set(spans.map((s) => s.spanContext().spanId));
    for (const s of spans.filter((x) => x !== root)) expect(ids).toContain(s.parentSpanId);
    expect(named(spans, 'UpdateWithStartWorkflow:result')).toHaveLength(1);

    const { name } = resourceNames(r.executionId, 1);
    const [run] = named(spans, 'RunActivity:runSandbox');
    expect(run.attributes).toMatchObject({
      [TRACE_ATTRIBUTES.executionId]: r.executionId,
      [TRACE_ATTRIBUTES.attempt]: 1,
      [TRACE_ATTRIBUTES.namespace]: SANDBOX_NAMESPACE,
      [TRACE_ATTRIBUTES.sandbox]: 'cold',
      [TRACE_ATTRIBUTES.job]: name,
      [TRACE_ATTRIBUTES.configMap]: name,
    });
    expect(String(run.attributes[TRACE_ATTRIBUTES.pod])).toMatch(new RegExp(`^${name}-`));
    const [cleanup] = named(spans, 'RunActivity:cleanup');
    expect(cleanup.attributes).toMatchObject({
      [TRACE_ATTRIBUTES.executionId]: r.executionId,
      [TRACE_ATTRIBUTES.job]: name,
    });
    // Cleanup follows the run, inside the same trace.
    expect(hr(cleanup.startTime)).toBeGreaterThanOrEqual(hr(run.endTime));
  }
  expect(new Set(traceIds).size).toBe(runs.length);
});

const hr = ([s, ns]: [number, number]) => s * 1e3 + ns / 1e6;

test('tracing is off unless the OTEL_* variables ask for it; an unknown exporter is refused by name', () => {
  expect(traceExporterFromEnv({})).toBeUndefined();
  expect(traceExporterFromEnv({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:4318' })).toBe(
    undefined,
  );
  expect(traceExporterFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe('otlp');
  expect(traceExporterFromEnv({ OTEL_TRACES_EXPORTER: 'console' })).toBe('console');
  expect(() => traceExporterFromEnv({ OTEL_TRACES_EXPORTER: 'zipkin' })).toThrow(/OTEL_TRACES_EXPORTER=zipkin/);
});

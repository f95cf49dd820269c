/**
 * Traces on the real stack: with tracing on (here the OpenTelemetry SDK's in-memory exporter), each execution is one
 * trace, from the client's `executeCode` through the workflow to its run and cleanup steps, and the steps' spans
 * name the execution and the Kubernetes objects it used.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { SandboxClient } from '../../client';
import { PROJECT_ROOT } from '../../cli/local-stack';
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

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes?: { key: string; value: { stringValue?: string; intValue?: number | string } }[];
}

/** A span id as hex, whichever way the OTLP/JSON body encoded it. */
const hex = (id: string | undefined) =>
  !id ? '' : /^[0-9a-f]+$/i.test(id) ? id.toLowerCase() : Buffer.from(id, 'base64').toString('hex');

test('the worker process exports its spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, in the caller’s trace', async () => {
  // An OTLP/HTTP (JSON) receiver.
  const received: { service?: string; span: OtlpSpan }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const parsed = JSON.parse(body) as {
          resourceSpans: {
            resource?: { attributes?: { key: string; value: { stringValue?: string } }[] };
            scopeSpans: { spans: OtlpSpan[] }[];
          }[];
        };
        for (const rs of parsed.resourceSpans) {
          const service = rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue;
          for (const ss of rs.scopeSpans) for (const span of ss.spans) received.push({ service, span });
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const taskQueue = `test-otlp-${process.pid}-${Date.now()}`;
  const worker = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', path.join(PROJECT_ROOT, 'dev', 'worker.ts')],
    {
      cwd: PROJECT_ROOT,
      env: {
        ...process.env,
        DS_TASK_QUEUE: taskQueue,
        DS_WARM_POOL_SIZE: '0',
        DS_RECONCILE_INTERVAL_SECONDS: '0',
        DS_LOG_LEVEL: 'WARN',
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
        OTEL_SERVICE_NAME: 'ds-otlp-test',
        OTEL_BSP_SCHEDULE_DELAY: '200',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  const client = await SandboxClient.connect({ taskQueue, tracing: true });
  try {
    // As a user would: once the worker polls. (Started before any worker polls, the client would end the execution
    // as NoWorker after noWorkerSeconds, and a worker from the sources can take longer than that on a busy node.)
    await eventually(
      () => client.pollers(),
      (n) => n > 0,
      120_000,
    );
    const executionId = uniqueId('trace-otlp');
    const result = await client.executeCode({ code: 'print(1)' }, { executionId });
    expect(result.status).toBe('succeeded');
    await client.handle(executionId).result();
    const root = exporter
      .getFinishedSpans()
      .find((s) => s.name === 'executeCode' && s.attributes[TRACE_ATTRIBUTES.executionId] === executionId)!;
    const traceId = root.spanContext().traceId;
    const spans = await eventually(
      async () => received.filter((r) => hex(r.span.traceId) === traceId),
      (rs) =>
        ['RunWorkflow:executeCode', 'RunActivity:runSandbox', 'RunActivity:cleanup'].every((n) =>
          rs.some((r) => r.span.name === n),
        ),
      30_000,
    );
    expect(new Set(spans.map((r) => r.service))).toEqual(new Set(['ds-otlp-test']));
    const run = spans.find((r) => r.span.name === 'RunActivity:runSandbox')!.span;
    const attr = (k: string) => run.attributes?.find((a) => a.key === k)?.value.stringValue;
    expect(attr(TRACE_ATTRIBUTES.executionId)).toBe(executionId);
    expect(attr(TRACE_ATTRIBUTES.job)).toBe(resourceNames(executionId, 1).name);
  } finally {
    await client.close();
    await new Promise<void>((resolve) => {
      if (worker.exitCode !== null) return resolve();
      worker.once('exit', () => resolve());
      worker.kill('SIGTERM');
    });
    server.close();
  }
});

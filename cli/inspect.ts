/** `durable-sandbox status | cancel | list`: looking at executions, from Temporal's record (no worker needed). */
import type { SandboxClient } from '../client';
import { SEARCH_ATTRIBUTES } from '../core/search-attributes';
import { EXIT } from './exit-codes';

const out = (line: string) => process.stdout.write(`${line}\n`);

export async function status(client: SandboxClient, executionId: string, json: boolean): Promise<number> {
  const s = await client.getExecution(executionId);
  if (json) {
    out(JSON.stringify(s, null, 2));
    return EXIT.ok;
  }
  switch (s.state) {
    case 'queued':
      out(
        `${executionId}: queued on task queue ${s.taskQueue} for ${Math.round(s.waitingMs / 1000)} s (${s.pollers} workers polling)`,
      );
      break;
    case 'running':
      out(`${executionId}: running: ${s.stage.stage}: ${s.stage.detail}${s.sandbox ? ` (${s.sandbox})` : ''}`);
      if (s.output?.stdout.text) out(`--- stdout (newest)\n${s.output.stdout.text}`);
      if (s.output?.stderr.text) out(`--- stderr (newest)\n${s.output.stderr.text}`);
      break;
    case 'cleaning_up':
    case 'completed': {
      const r = s.result;
      out(
        `${executionId}: ${s.state === 'cleaning_up' ? 'result ready, cleaning up' : 'completed'}: ${r.status}${r.exitCode !== null ? ` (exit ${r.exitCode})` : ''}, ${r.sandbox} sandbox`,
      );
      if (r.error) out(`error: ${r.error.reason}: ${r.error.message}`);
      out(`--- stdout\n${r.stdout}--- stderr\n${r.stderr}---`);
      for (const f of r.outputFiles) out(`output file ${f.name} (${f.sizeBytes} bytes, ${f.mimeType})`);
      break;
    }
    default:
      out(`${executionId}: ${s.state}: ${s.error}`);
  }
  return EXIT.ok;
}

export async function cancel(client: SandboxClient, executionId: string): Promise<number> {
  await client.cancelExecution(executionId);
  out(`${executionId}: cancellation requested (the pod is stopped; the result, 'cancelled', keeps the output so far)`);
  return EXIT.ok;
}

/** Recent executions, newest first, from Temporal's visibility (with their SandboxStatus when the workflow set it). */
export async function list(client: SandboxClient, limit: number, json: boolean): Promise<number> {
  const rows: { executionId: string; status: string; language?: string; started: string; closed?: string }[] = [];
  for await (const w of client.temporal.workflow.list({ query: `WorkflowType = 'executeCode'` })) {
    const sa = w.typedSearchAttributes;
    rows.push({
      executionId: w.workflowId,
      status: sa?.get(SEARCH_ATTRIBUTES.status) ?? w.status.name.toLowerCase(),
      language: sa?.get(SEARCH_ATTRIBUTES.language),
      started: w.startTime.toISOString(),
      ...(w.closeTime ? { closed: w.closeTime.toISOString() } : {}),
    });
    if (rows.length >= limit) break;
  }
  if (json) {
    out(JSON.stringify(rows, null, 2));
  } else {
    for (const r of rows) out(`${r.started}  ${r.status.padEnd(11)} ${(r.language ?? '').padEnd(7)} ${r.executionId}`);
    if (!rows.length) out('no executions');
  }
  return EXIT.ok;
}

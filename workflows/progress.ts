/**
 * What an execution shows while it runs: the phase timeline (query `timeline`), its progress (query `progress`),
 * the current details in the Temporal UI and the Sandbox* search attributes.
 */
import { setCurrentDetails, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { SEARCH_ATTRIBUTES } from '../core/search-attributes';
import type { ExecutionResult, Language, PhaseEvent, PhaseName } from '../core/types';
import { progressQuery, timelineQuery, type ExecutionProgress } from './queries';

export class Progress {
  readonly timeline: PhaseEvent[] = [];
  private state: ExecutionProgress = { attempt: 1, phase: 'started', detail: 'starting' };

  constructor(
    private readonly useSearchAttributes: boolean,
    language: Language,
  ) {
    setHandler(timelineQuery, () => this.timeline);
    setHandler(progressQuery, () => this.state);
    this.mark('started', workflowInfo().runStartTime.getTime(), 1);
    if (useSearchAttributes) {
      upsertSearchAttributes([
        { key: SEARCH_ATTRIBUTES.status, value: 'running' },
        { key: SEARCH_ATTRIBUTES.language, value: language },
      ]);
    }
  }

  mark(phase: PhaseName, at: number | undefined, attempt: number): void {
    if (at === undefined) return;
    this.timeline.push({ phase, at, attempt });
    this.state = { ...this.state, phase, attempt };
    this.show();
  }

  detail(detail: string, attempt: number): void {
    this.state = { ...this.state, detail, attempt };
    this.show();
  }

  finish(result: ExecutionResult): void {
    this.state = { ...this.state, result, detail: `finished: ${result.status}` };
    this.show();
    if (this.useSearchAttributes) {
      upsertSearchAttributes([
        { key: SEARCH_ATTRIBUTES.status, value: result.status },
        ...(result.exitCode !== null ? [{ key: SEARCH_ATTRIBUTES.exitCode, value: result.exitCode }] : []),
      ]);
    }
  }

  private show(): void {
    const s = this.state;
    const lines = [`**${s.result ? s.result.status : s.phase}** (attempt ${s.attempt}): ${s.detail}`, ''];
    for (const e of this.timeline) lines.push(`- ${e.phase}: ${new Date(e.at).toISOString()} (attempt ${e.attempt})`);
    setCurrentDetails(lines.join('\n'));
  }
}

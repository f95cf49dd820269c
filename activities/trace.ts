/** Adds what a step knows to its span (when tracing is on; see worker/tracing.ts). */
import { trace } from '@opentelemetry/api';
import type { TraceAttributes } from '../core/trace';

export function annotateSpan(attributes: TraceAttributes): void {
  trace.getActiveSpan()?.setAttributes(attributes);
}

/** The Temporal CLI binary the local stack builds (scripts/stack), for workflow tests' dev servers. */
import { stackBinary } from '../../cli/local-stack';

export function temporalCliPath(): string {
  return stackBinary('temporal', 'TEMPORAL_CLI_VERSION', 'temporal');
}

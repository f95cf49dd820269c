/** The Temporal CLI binary the local stack builds (scripts/stack), for workflow tests' dev servers. */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export function temporalCliPath(): string {
  const versions = readFileSync(path.join(__dirname, '..', '..', 'scripts', 'stack', 'versions.env'), 'utf8');
  const version = /^TEMPORAL_CLI_VERSION=(\S+)/m.exec(versions)?.[1];
  const cache = process.env.DS_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'durable-sandbox');
  const cli = path.join(cache, 'bin', `temporal-${version}`, 'temporal');
  if (!existsSync(cli)) throw new Error(`no Temporal CLI at ${cli}: \`npm run stack:up\` (or stack:build) builds it`);
  return cli;
}

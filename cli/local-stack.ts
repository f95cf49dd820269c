/**
 * Points a process at the local stack (scripts/stack/up.sh writes .stack/stack.env) unless the environment already
 * names a real cluster or Temporal: KUBECONFIG set means "use that cluster", TEMPORAL_ADDRESS set means "use that
 * Temporal", and nothing of the local stack is used for that side.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The checkout this code runs from (the folder holding package.json), from the sources or from dist/. */
export const PROJECT_ROOT = ((): string => {
  for (let dir = path.resolve(__dirname, '..'); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(__dirname, '..');
  }
})();
export const STACK_DIR = process.env.DS_STACK_DIR ?? path.join(PROJECT_ROOT, '.stack');
export const STACK_ENV_FILE = path.join(STACK_DIR, 'stack.env');

/** Keys that belong to the Kubernetes side and to the Temporal side of stack.env. */
const KUBE_KEYS = [
  'KUBECONFIG',
  'DS_ADMIN_KUBECONFIG',
  'DS_IMAGE',
  'DS_IMAGE_JAVASCRIPT',
  // Sessions' workspaces go to the local stack's object store with its local cluster.
  'DS_WORKSPACE_STORE',
  'DS_WORKSPACE_S3_ENDPOINT',
  'DS_WORKSPACE_S3_ACCESS_KEY_ID',
  'DS_WORKSPACE_S3_SECRET_ACCESS_KEY',
  // The egress gateway the local cluster's sandboxes reach, where its records are read, and the key it shares.
  'DS_EGRESS_GATEWAY',
  'DS_EGRESS_REPORT',
  'DS_EGRESS_KEY_FILE',
];
const TEMPORAL_KEYS = ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'TEMPORAL_UI'];

export function readStackEnv(file = STACK_ENV_FILE): Record<string, string> {
  if (!existsSync(file)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) out[m[1]] = m[2];
  }
  return out;
}

/** Which sides use the local stack: true unless the environment points that side elsewhere. */
export function localSides(env: NodeJS.ProcessEnv = process.env): { kube: boolean; temporal: boolean } {
  return {
    kube: !env.KUBECONFIG || env.DS_LOCAL_KUBE === '1',
    temporal: !env.TEMPORAL_ADDRESS || env.DS_LOCAL_TEMPORAL === '1',
  };
}

/** Fills `env` (process.env by default) with the local stack's settings for each side not pointed elsewhere. */
export function applyStackEnv(env: NodeJS.ProcessEnv = process.env): { kube: boolean; temporal: boolean } {
  const sides = localSides(env);
  const stack = readStackEnv();
  const apply = (keys: string[]): void => {
    for (const k of keys) if (stack[k] !== undefined && env[k] === undefined) env[k] = stack[k];
  };
  // Remembered in the environment, so later checks (and child processes) still know the stack is local.
  if (sides.kube && stack.KUBECONFIG) {
    apply(KUBE_KEYS);
    env.DS_LOCAL_KUBE = '1';
  }
  if (sides.temporal && stack.TEMPORAL_ADDRESS) {
    apply(TEMPORAL_KEYS);
    env.DS_LOCAL_TEMPORAL = '1';
  }
  return sides;
}

/**
 * Brings the local stack up when this process uses it and it is not running (the first time builds it: minutes).
 * Messages go to stderr.
 */
export function ensureLocalStack(): void {
  const sides = localSides();
  if (!sides.kube && !sides.temporal) return;
  const stack = path.join(PROJECT_ROOT, 'scripts', 'stack');
  if (spawnSync('bash', [path.join(stack, 'status.sh')], { stdio: 'ignore' }).status === 0) return;
  process.stderr.write(
    'The local stack is not running: bringing it up (the first time builds it, which takes a while).\n',
  );
  const up = spawnSync('bash', [path.join(stack, 'up.sh')], { stdio: ['ignore', process.stderr, process.stderr] });
  if (up.status !== 0) throw new Error('could not bring the local stack up (see the messages above)');
}

/** A value of scripts/stack/versions.env: the stack's pinned versions and image names. */
export function stackVersion(key: string): string {
  const versions = readFileSync(path.join(PROJECT_ROOT, 'scripts', 'stack', 'versions.env'), 'utf8');
  const value = new RegExp(`^${key}=(\\S+)`, 'm').exec(versions)?.[1];
  if (!value) throw new Error(`scripts/stack/versions.env has no ${key}`);
  return value;
}

/**
 * A binary the stack built into its cache, where scripts/stack/lib.sh puts it: `<cache>/bin/<component>-<version>/`,
 * the cache being DS_CACHE_DIR, else $XDG_CACHE_HOME/durable-sandbox, else ~/.cache/durable-sandbox.
 */
export function stackBinary(component: string, versionKey: string, binary: string): string {
  const cache =
    process.env.DS_CACHE_DIR ||
    path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'durable-sandbox');
  const file = path.join(cache, 'bin', `${component}-${stackVersion(versionKey)}`, binary);
  if (!existsSync(file)) throw new Error(`no ${binary} at ${file}: \`npm run stack:up\` (or stack:build) builds it`);
  return file;
}

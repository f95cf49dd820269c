/** Faults on the local stack: kill a component by its recorded PID, then bring it back with the stack's own `up`. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { PROJECT_ROOT, STACK_DIR } from '../../cli/local-stack';

function pidOf(component: string): number {
  return Number(readFileSync(path.join(STACK_DIR, 'pids', `${component}.pid`), 'utf8').trim());
}

function gone(pid: number): boolean {
  try {
    return /\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

export async function killComponent(component: 'temporal' | 'kube-apiserver'): Promise<void> {
  const pid = pidOf(component);
  process.kill(pid, 'SIGKILL');
  const until = Date.now() + 10_000;
  while (!gone(pid) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
}

/** Runs scripts/stack/up.sh, which restarts whatever is not running and waits until it is healthy. */
export function stackUp(): void {
  const r = spawnSync('bash', [path.join(PROJECT_ROOT, 'scripts', 'stack', 'up.sh')], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`stack up failed: ${r.stderr.slice(-2000)}`);
}

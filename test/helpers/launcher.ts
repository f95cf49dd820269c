/**
 * Runs the real launcher (launcher/launcher.py) on this machine as a cold sandbox does: a task file (the mounted
 * task of core/manifests.ts's launcherTask) beside the program.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { LauncherTask } from '../../core/launcher-protocol';

export const LAUNCHER = path.join(__dirname, '..', '..', 'launcher', 'launcher.py');

/** Writes a mounted task into `dir` and returns the launcher's arguments for it (after the interpreter). */
export function coldLauncherArgs(
  dir: string,
  task: Partial<LauncherTask> & { command: string[]; timeoutSeconds: number; stdoutCap: number; stderrCap: number },
): string[] {
  const file = path.join(dir, 'task.json');
  const full: LauncherTask = {
    executionId: 'exec-1',
    attempt: 1,
    file: 'main.py',
    env: {},
    outDir: path.join(dir, 'out'),
    filesMaxCount: 0,
    fileCap: 0,
    filesCap: 0,
    ...task,
  };
  writeFileSync(file, JSON.stringify(full));
  return [LAUNCHER, '--task', file];
}

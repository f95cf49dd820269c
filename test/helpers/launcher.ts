/**
 * Runs the real launcher on this machine as a cold sandbox does: a task file (the mounted task of core/manifests.ts's
 * launcherTask) beside the program. The launcher run is the one that ships: its modules assembled into one program
 * (core/launcher-assembly.ts), written once per test process.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LauncherTask } from '../../core/launcher-protocol';
import { readLauncherSource, readWorkspaceSource } from '../../worker/worker';

const shipped = mkdtempSync(path.join(os.tmpdir(), 'ds-launcher-'));
/** The assembled launcher, as every sandbox runs it. */
export const LAUNCHER = path.join(shipped, 'launcher.py');
/** The assembled workspace helper, as a session's sandbox runs it. */
export const WORKSPACE_HELPER = path.join(shipped, 'workspace.py');
writeFileSync(LAUNCHER, readLauncherSource());
writeFileSync(WORKSPACE_HELPER, readWorkspaceSource());

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

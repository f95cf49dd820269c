/** Builds the durable-sandbox worker: the executeCode workflow and its activities, bound to one cluster. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import { createKube } from '../activities/kube';
import type { WorkerConfig } from './config';
import { loadKubeConfig } from './connect';

/** launcher/launcher.py, found beside the sources (ts-node) or the compiled output (dist/). */
export function readLauncherSource(): string {
  for (const dir of [path.resolve(__dirname, '..'), path.resolve(__dirname, '..', '..')]) {
    try {
      return readFileSync(path.join(dir, 'launcher', 'launcher.py'), 'utf8');
    } catch {
      // try the next place
    }
  }
  throw new Error('launcher/launcher.py not found next to the worker');
}

export async function createSandboxWorker(
  config: WorkerConfig,
  connection: NativeConnection,
  extra: Partial<WorkerOptions> = {},
): Promise<Worker> {
  const kube = createKube(loadKubeConfig(config.kubeconfig));
  const activities = createActivities({ kube, policy: config.policy, launcherSource: readLauncherSource() });
  return Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities,
    maxConcurrentActivityTaskExecutions: config.maxConcurrentActivities,
    ...extra,
  });
}

/** Builds the durable-sandbox worker: the executeCode workflow and its activities, bound to one cluster. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { assembleLauncher, type LauncherFiles } from '../core/launcher-assembly';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import { s3WorkspaceStore } from '../activities/workspace-store';
import { createActivities } from '../activities';
import { createKube, type Kube } from '../activities/kube';
import type { WorkerConfig } from './config';
import { connectTemporalClient, loadKubeConfig } from './connect';
import { preflight } from './preflight';
import { ensureReconcilerSchedule } from './reconciler-schedule';
import { ensureWarmPools } from './warm-pools';

/** The longest a heartbeat (and with it the live output clients read) is held back by the worker. */
export const LIVE_OUTPUT_INTERVAL = '250ms';

/** The launcher's modules and kernels (launcher/), found beside the sources (ts-node) or the compiled output (dist/). */
export function readLauncherFiles(): LauncherFiles {
  for (const dir of [path.resolve(__dirname, '..', 'launcher'), path.resolve(__dirname, '..', '..', 'launcher')]) {
    if (!existsSync(path.join(dir, 'launcher.py'))) continue;
    const files: Record<string, string> = {};
    for (const name of readdirSync(dir))
      if (name.endsWith('.py')) files[name] = readFileSync(path.join(dir, name), 'utf8');
    for (const name of readdirSync(path.join(dir, 'kernels')))
      files[`kernels/${name}`] = readFileSync(path.join(dir, 'kernels', name), 'utf8');
    return files;
  }
  throw new Error('launcher/ not found next to the worker');
}

/** The egress gateway as the activities use it, its key read from its file (never part of the configuration). */
function egressGateway(e: NonNullable<WorkerConfig['egress']>): { gateway: string; report: string; key: string } {
  const key = (e.key ?? readFileSync(e.keyFile!, 'utf8')).trim();
  if (key.length < 16) throw new Error('the egress key (DS_EGRESS_KEY_FILE / DS_EGRESS_KEY) is shorter than 16 bytes');
  return { gateway: e.gateway, report: e.report, key };
}

/** The launcher as it ships (core/launcher-assembly.ts): what runs first in every sandbox. */
export const readLauncherSource = () => assembleLauncher(readLauncherFiles(), 'launcher.py');
/** launcher/workspace.py as it ships: saves and restores a session's workspace in its sandbox. */
export const readWorkspaceSource = () => assembleLauncher(readLauncherFiles(), 'workspace.py');

/**
 * The worker, plus a Temporal client its reconciler and pool activities use (close it after the worker stops). Also
 * makes sure the reconciler's Schedule and the warm pools' workflows exist.
 */
export async function createSandboxWorker(
  config: WorkerConfig,
  connection: NativeConnection,
  extra: Partial<WorkerOptions> = {},
  /**
   * What the worker sets up for its task queue at start, beyond serving it: the reconciler's Schedule and the warm
   * pools' workflows (both on by default). A worker that lives only as long as one command sets up neither (or pools
   * it then drains): nothing it starts may outlive it.
   */
  duties: { reconcilerSchedule?: boolean; pools?: boolean } = {},
): Promise<Worker & { temporalClient: Client; kube: Kube }> {
  // One connection pool and one pod cache for every activity of the process (stopped when the worker stops).
  const kube = createKube(loadKubeConfig(config.kubeconfig), { shared: true });
  try {
    return await buildWorker(config, connection, extra, duties, kube);
  } catch (err) {
    kube.close();
    throw err;
  }
}

async function buildWorker(
  config: WorkerConfig,
  connection: NativeConnection,
  extra: Partial<WorkerOptions>,
  duties: { reconcilerSchedule?: boolean; pools?: boolean },
  kube: Kube,
): Promise<Worker & { temporalClient: Client; kube: Kube }> {
  await preflight(config, kube);
  const temporalClient = await connectTemporalClient(config.temporal);
  if (duties.reconcilerSchedule !== false) await ensureReconcilerSchedule(temporalClient, config);
  const activities = createActivities({
    kube,
    policy: config.policy,
    launcherSource: readLauncherSource(),
    workspaceSource: readWorkspaceSource(),
    ...(config.workspaceStore ? { workspaces: s3WorkspaceStore(config.workspaceStore) } : {}),
    pool: config.pool,
    temporal: temporalClient,
    ...(config.egress ? { egress: egressGateway(config.egress) } : {}),
  });
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities,
    maxConcurrentActivityTaskExecutions: config.maxConcurrentActivities,
    ...(config.identity ? { identity: config.identity } : {}),
    // Heartbeats carry live output: clients see it this soon (Temporal's default would hold it back for seconds).
    maxHeartbeatThrottleInterval: LIVE_OUTPUT_INTERVAL,
    ...extra,
  });
  if (duties.pools !== false) await ensureWarmPools(temporalClient, config);
  const run = worker.run.bind(worker);
  return Object.assign(worker, {
    temporalClient,
    kube,
    async run(): Promise<void> {
      try {
        await run();
      } finally {
        kube.close();
      }
    },
  });
}

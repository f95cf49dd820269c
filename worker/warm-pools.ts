/**
 * Makes sure each language's warm pool workflow runs with this worker's settings (every worker does this at start;
 * the pools themselves are shared by the workers of a task queue). With DS_WARM_POOL_SIZE=0 a running pool is told
 * to empty itself, and none is started.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { PoolInput } from '../activities/maintain-pool';
import { SANDBOX_LANGUAGES, type Language } from '../core/languages';
import { POOL_SIGNALS, poolWorkflowId } from '../core/pool';
import type { warmPool } from '../workflows';
import type { WorkerConfig } from './config';

function poolInput(config: WorkerConfig, language: Language): PoolInput {
  const taskQueue = config.temporal.taskQueue;
  return {
    taskQueue,
    language,
    policy: config.policy,
    config: { size: config.pool.sizes[language] ?? config.pool.size, maxIdleSeconds: config.pool.maxIdleSeconds },
    owner: poolWorkflowId(taskQueue, language),
  };
}

export async function ensureWarmPools(client: Client, config: WorkerConfig): Promise<void> {
  for (const language of SANDBOX_LANGUAGES) {
    const input = poolInput(config, language);
    if (input.config.size > 0) {
      await client.workflow.signalWithStart<typeof warmPool, [PoolInput]>('warmPool', {
        workflowId: input.owner,
        taskQueue: config.temporal.taskQueue,
        args: [input],
        signal: POOL_SIGNALS.configure,
        signalArgs: [input],
        staticSummary: `warm pool: ${language}`,
      });
    } else {
      await client.workflow
        .getHandle(input.owner)
        .signal(POOL_SIGNALS.configure, input)
        .catch((err: unknown) => {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
        });
    }
  }
}

/** Empties this worker's pools and waits (up to `timeoutMs`) until their workflows have ended. */
export async function drainWarmPools(client: Client, config: WorkerConfig, timeoutMs = 60_000): Promise<void> {
  const sizes = Object.fromEntries(SANDBOX_LANGUAGES.map((l) => [l, 0])) as Record<Language, number>;
  const drained = { ...config, pool: { ...config.pool, size: 0, sizes } };
  await ensureWarmPools(client, drained);
  const ends = SANDBOX_LANGUAGES.map((language) =>
    client.workflow
      .getHandle(poolWorkflowId(config.temporal.taskQueue, language))
      .result()
      .catch(() => undefined),
  );
  await Promise.race([Promise.all(ends), new Promise((r) => setTimeout(r, timeoutMs))]);
}

/** Waiting for the node to be quiet between measurements: earlier runs' pods gone, their teardown done. */
import type { Kube } from '../../activities/kube';
import { LABELS, MANAGED_BY } from '../../core/names';
import { nodeBusyPct } from './sampler';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits (up to 60 s) until the namespace has no sandbox pods left (warm pool pods too, unless `keepPools`), so a
 * measurement does not share the node with an earlier one's pods being torn down.
 */
export async function settle(
  kube: Kube,
  namespace: string,
  log: (s: string) => void,
  options: { keepPools?: boolean } = {},
): Promise<void> {
  const labelSelector = `${LABELS.managedBy}=${MANAGED_BY}${options.keepPools ? `,!${LABELS.pool}` : ''}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { items } = await kube.core.listNamespacedPod({ namespace, labelSelector });
    if (items.length === 0) return;
    if (Date.now() > deadline) {
      log(`  (${items.length} sandbox pod(s) still present after 60 s; going on)`);
      return;
    }
    await sleep(1000);
  }
}

/**
 * Waits (up to `maxMs`) until the node's CPU over a second is no busier than `pct` %, e.g. until pods that have just
 * started have settled: their start's tail (status updates, probes, the runtime's bookkeeping) would otherwise land on
 * what is measured next. Returns how long it waited and the last second's figure.
 */
export async function untilQuiet(
  pct: number,
  maxMs = 30_000,
): Promise<{ waitedMs: number; busyPct: number; firstPct: number }> {
  const t0 = Date.now();
  let firstPct: number | undefined;
  for (;;) {
    const busyPct = await nodeBusyPct(1000);
    firstPct ??= busyPct;
    if (!(busyPct > pct) || Date.now() - t0 >= maxMs) return { waitedMs: Date.now() - t0, busyPct, firstPct };
  }
}

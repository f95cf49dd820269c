/**
 * What an attempt's program runs in, behind one interface: the run step gets a Sandbox here, hands it the task,
 * watches it and returns, without knowing which kind it holds. Each kind (core/sandbox.ts lists them and their
 * traits) has a source that knows how to get one for a fresh attempt, find the one an earlier try got before it
 * could record it, and carry on with the one an earlier try recorded: a Job made for the attempt (cold-sandbox.ts)
 * or a pod claimed from the warm pool (warm-sandbox.ts). Cleanup removes every kind alike, by the attempt's labels.
 */
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import type { AttemptSpec, RunHeartbeat } from '../core/attempt';
import type { PodProgress } from '../core/classify';
import { SANDBOX_KIND_NAMES, type SandboxKind } from '../core/sandbox';
import { coldSandboxes } from './cold-sandbox';
import type { ActivityDeps } from './deps';
import { warmSandboxes } from './warm-sandbox';

export interface Sandbox {
  readonly kind: SandboxKind;
  /** When the attempt got it: its Job created, its pool pod claimed. */
  readonly acquiredAt: number;
  /** The pod, when it is known as soon as the sandbox is (a claimed pool pod). */
  readonly pod?: string;
  /** What the watch starts from: an earlier try's progress, or {} when this try found an earlier one's sandbox. */
  readonly resumed?: PodProgress;
  /** Where a fresh attempt's watch starts: the resourceVersion of the create or the claim, and the pod if known. */
  readonly from?: { resourceVersion?: string; pod?: V1Pod };
  /** The Job as its create returned it (spares the watch a read). */
  readonly job?: V1Job;
  /**
   * Hands the task to a launcher waiting for it; absent when the task came with the pod or an earlier try already
   * handed it over. Called only once Temporal has recorded which sandbox this is, so a retry never hands the
   * program to a second one.
   */
  readonly handOver?: () => Promise<Handover>;
  /** Work off the critical path (e.g. ownership of the ConfigMap) that the step waits for before it returns. */
  readonly settled?: Promise<void>;
  /**
   * Called every STARTING_CHECK_MS while the program has not started: makes sure what the pod waits for (e.g. the
   * launcher ConfigMap it mounts) is still there.
   */
  readonly whileStarting?: () => Promise<unknown>;
}

/** How often a sandbox whose program has not started checks what it waits for. */
export const STARTING_CHECK_MS = 10_000;

export interface Handover {
  /** Ends the connection the task went through. */
  close(): void;
}

export interface SandboxSource {
  /** A sandbox of this kind for a fresh attempt; undefined when this kind has none for it. */
  acquire(deps: ActivityDeps, spec: AttemptSpec, taskQueue: string): Promise<Sandbox | undefined>;
  /** The sandbox of this kind an earlier try of the step got and died before recording. */
  find(deps: ActivityDeps, spec: AttemptSpec, taskQueue: string): Promise<Sandbox | undefined>;
  /** Carries on with the sandbox an earlier try recorded in its heartbeat. */
  resume(deps: ActivityDeps, spec: AttemptSpec, recorded: RunHeartbeat & { acquiredAt: number }): Promise<Sandbox>;
}

/** A one-shot attempt never runs in a session's pod: sessions get theirs through session-sandbox.ts. */
const noSessionPods: SandboxSource = {
  acquire: async () => undefined,
  find: async () => undefined,
  resume: async () => {
    throw new Error("a one-shot attempt never runs in a session's pod");
  },
};

const SOURCES: Readonly<Record<SandboxKind, SandboxSource>> = {
  cold: coldSandboxes,
  warm: warmSandboxes,
  session: noSessionPods,
};

/** The order in which a fresh attempt asks for a sandbox: a ready pool pod first; a Job made for it never fails to come. */
const PREFERENCE: readonly SandboxKind[] = ['warm', 'cold'];

export async function acquireSandbox(deps: ActivityDeps, spec: AttemptSpec, taskQueue: string): Promise<Sandbox> {
  for (const kind of PREFERENCE) {
    const got = await SOURCES[kind].acquire(deps, spec, taskQueue);
    if (got) return got;
  }
  throw new Error('no kind of sandbox could be acquired');
}

export async function findSandbox(
  deps: ActivityDeps,
  spec: AttemptSpec,
  taskQueue: string,
): Promise<Sandbox | undefined> {
  for (const kind of SANDBOX_KIND_NAMES) {
    const found = await SOURCES[kind].find(deps, spec, taskQueue);
    if (found) return found;
  }
  return undefined;
}

export function resumeSandbox(
  deps: ActivityDeps,
  spec: AttemptSpec,
  recorded: RunHeartbeat & { acquiredAt: number },
): Promise<Sandbox> {
  // A heartbeat recorded before kinds were named ran cold.
  return SOURCES[recorded.sandbox ?? 'cold'].resume(deps, spec, recorded);
}

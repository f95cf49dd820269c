/**
 * Builds the two objects of one attempt: the ConfigMap holding the code (and the task and input files) and the
 * hardened Job that runs it, plus the namespace's launcher ConfigMap that every cold sandbox mounts beside its own.
 * Pure: the same inputs give the same manifests.
 */
import type { V1ConfigMap, V1Job, V1KeyToPath, V1OwnerReference, V1PodSpec, V1Volume } from '@kubernetes/client-node';
import { LANGUAGES, LAUNCHER_INTERPRETER, SANDBOX_DIR } from './languages';
import { egressMetadata, type SandboxEgress } from './egress';
import { ANNOTATIONS, hash16, LABELS, MANAGED_BY, resourceNames } from './names';
import type { ExecutionPolicy } from './policy';
import type { LauncherTask } from './launcher-protocol';
import { bytes, cpuMillis } from './quantity';
import type { Language } from './types';
import type { ExecutionRequest } from './validate';

export const CONTAINER_NAME = 'sandbox';
export const SANDBOX_UID = 1001;
export const SCRATCH_DIR = '/tmp';
/** Where the program leaves files for the result. */
export const OUTPUT_DIR = `${SANDBOX_DIR}/out`;
/** Finished Jobs the workflow could not delete are removed by Kubernetes after this long: a backstop only. */
export const TTL_AFTER_FINISHED_SECONDS = 3600;
/** Time between SIGTERM and SIGKILL when a sandbox pod is stopped. */
export const TERMINATION_GRACE_SECONDS = 3;
const LAUNCHER_KEY = 'launcher.py';
const CODE_KEY = 'code';
const TASK_KEY = 'task.json';
const fileKey = (name: string): string => `file.${name}`;

export interface SandboxSpec {
  executionId: string;
  attempt: number;
  namespace: string;
  request: ExecutionRequest;
  policy: ExecutionPolicy;
  /** Source of launcher/launcher.py. */
  launcherSource: string;
  /** Its network egress, when the request has an allow-list. */
  network?: SandboxNetwork;
}

/**
 * A sandbox's network egress as the worker gives it: what its pod carries for the gateway (the egress annotation
 * and label), what its program gets in its environment (the proxy, with its credential), and where the gateway is.
 */
export interface SandboxNetwork {
  egress: SandboxEgress;
  env: Record<string, string>;
  /** host:port */
  proxy: string;
}

const LAUNCHER_CONFIGMAP_PREFIX = 'ds-launcher-';

/**
 * The name of the ConfigMap holding this launcher: one per launcher version and namespace, made once and mounted
 * by every cold sandbox, so an attempt's own ConfigMap carries only its task (the launcher is ~53 KB; a print(1)'s
 * task under 1 KB). A new version gets a new name: pods of the old one keep theirs.
 */
export function launcherConfigMapName(launcherSource: string): string {
  return `${LAUNCHER_CONFIGMAP_PREFIX}${hash16(launcherSource).slice(0, 12)}`;
}

export function buildLauncherConfigMap(namespace: string, launcherSource: string): V1ConfigMap {
  const name = launcherConfigMapName(launcherSource);
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      namespace,
      labels: { [LABELS.managedBy]: MANAGED_BY, [LABELS.launcher]: name.slice(LAUNCHER_CONFIGMAP_PREFIX.length) },
    },
    immutable: true,
    data: { [LAUNCHER_KEY]: launcherSource },
  };
}

/**
 * The task the launcher runs (docs/LAUNCHER.md), one document for every sandbox: handed to a waiting launcher whole,
 * with the program and its files (`handed`), or mounted with the pod beside the program and files the ConfigMap
 * mounts, which it then leaves out (`mounted`).
 */
export function launcherTask(
  executionId: string,
  attempt: number,
  request: ExecutionRequest,
  policy: ExecutionPolicy,
  how: 'handed' | 'mounted',
  network?: SandboxNetwork,
): LauncherTask {
  const language = LANGUAGES[request.language];
  return {
    executionId,
    attempt,
    file: language.file,
    command: [...language.command],
    ...(how === 'handed' ? { code: request.code, files: request.files } : {}),
    // The proxy settings win over the program's own: there is no other way out anyway.
    env: network ? { ...request.env, ...network.env } : request.env,
    ...(network ? { egress: { proxy: network.proxy } } : {}),
    timeoutSeconds: request.timeoutSeconds,
    stdoutCap: policy.stdoutCapBytes,
    stderrCap: policy.stderrCapBytes,
    outDir: OUTPUT_DIR,
    filesMaxCount: policy.outputFilesMaxCount,
    fileCap: policy.outputFileCapBytes,
    filesCap: policy.outputFilesCapBytes,
    ...(policy.displaysMaxCount
      ? { displaysMaxCount: policy.displaysMaxCount, displaysCap: policy.displaysCapBytes ?? 0 }
      : {}),
  };
}

export function labelsFor(executionId: string, attempt: number): Record<string, string> {
  const names = resourceNames(executionId, attempt);
  return {
    [LABELS.managedBy]: MANAGED_BY,
    [LABELS.execution]: names.executionLabel,
    [LABELS.attempt]: String(attempt),
  };
}

function annotationsFor(spec: SandboxSpec): Record<string, string> {
  return { [ANNOTATIONS.executionId]: spec.executionId, [ANNOTATIONS.language]: spec.request.language };
}

export function buildConfigMap(spec: SandboxSpec): V1ConfigMap {
  const { name } = resourceNames(spec.executionId, spec.attempt);
  const task = launcherTask(spec.executionId, spec.attempt, spec.request, spec.policy, 'mounted', spec.network);
  const data: Record<string, string> = {
    [TASK_KEY]: JSON.stringify(task),
    [CODE_KEY]: spec.request.code,
  };
  const binaryData: Record<string, string> = {};
  for (const f of spec.request.files) {
    if (f.encoding === 'base64') binaryData[fileKey(f.name)] = f.content;
    else data[fileKey(f.name)] = f.content;
  }
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name,
      namespace: spec.namespace,
      labels: labelsFor(spec.executionId, spec.attempt),
      annotations: annotationsFor(spec),
    },
    immutable: true,
    data,
    ...(Object.keys(binaryData).length ? { binaryData } : {}),
  };
}

/** The ownerReference that makes a ConfigMap go when its Job is deleted. */
export function ownerReferenceTo(job: { name: string; uid: string }): V1OwnerReference {
  return { apiVersion: 'batch/v1', kind: 'Job', name: job.name, uid: job.uid, blockOwnerDeletion: false };
}

function smaller(a: string, b: string, parse: (q: string) => number | null): string {
  return (parse(a) ?? Infinity) <= (parse(b) ?? Infinity) ? a : b;
}

export function activeDeadlineSeconds(request: ExecutionRequest, policy: ExecutionPolicy): number {
  return request.timeoutSeconds + policy.startupAllowanceSeconds;
}

export function buildJob(spec: SandboxSpec): V1Job {
  const { request, policy } = spec;
  const { name } = resourceNames(spec.executionId, spec.attempt);
  const language = LANGUAGES[request.language];
  const labels = labelsFor(spec.executionId, spec.attempt);
  const items: V1KeyToPath[] = [
    { key: TASK_KEY, path: TASK_KEY },
    { key: CODE_KEY, path: language.file },
    ...request.files.map((f) => ({ key: fileKey(f.name), path: `files/${f.name}` })),
  ];
  const command = [LAUNCHER_INTERPRETER, `${SANDBOX_DIR}/${LAUNCHER_KEY}`, '--task', `${SANDBOX_DIR}/${TASK_KEY}`];
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: spec.namespace, labels, annotations: annotationsFor(spec) },
    spec: {
      // The user's code failing is a result, never a silent re-run.
      backoffLimit: 0,
      // Kubernetes kills the pod at this deadline even if every worker is gone.
      activeDeadlineSeconds: activeDeadlineSeconds(request, policy),
      ttlSecondsAfterFinished: TTL_AFTER_FINISHED_SECONDS,
      template: {
        // With egress, the pod carries it for the gateway (which watches pods by the egress label).
        metadata: {
          labels: { ...labels, ...egressMetadata(spec.network?.egress).labels },
          annotations: { ...annotationsFor(spec), ...egressMetadata(spec.network?.egress).annotations },
        },
        spec: hardenedPodSpec(policy, {
          image: policy.images[request.language],
          command,
          env: programEnv(request.language),
          cpu: request.cpu,
          memory: request.memory,
          // /sandbox: the launcher from the namespace's launcher ConfigMap, the task, code and files from the attempt's.
          sandboxVolume: {
            projected: {
              defaultMode: 0o444,
              sources: [
                {
                  configMap: {
                    name: launcherConfigMapName(spec.launcherSource),
                    items: [{ key: LAUNCHER_KEY, path: LAUNCHER_KEY }],
                  },
                },
                { configMap: { name, items } },
              ],
            },
          },
        }),
      },
    },
  };
}

/** The environment every program of a language starts with (the request's own variables come on top). */
export function programEnv(language: Language): Record<string, string> {
  return { ...LANGUAGES[language].env, HOME: SCRATCH_DIR, TMPDIR: SCRATCH_DIR };
}

/**
 * The hardened pod every sandbox runs in, cold (a Job's pod) or warm (a pool pod): gVisor, non-root, no
 * capabilities, read-only root, no token, no service links, no DNS, limits. `sandboxVolume` is what /sandbox holds:
 * the launcher's and the code's ConfigMaps (cold) or an empty directory the launcher writes the delivered task into (warm).
 */
export function hardenedPodSpec(
  policy: ExecutionPolicy,
  parts: {
    image: string;
    command: string[];
    env: Record<string, string>;
    cpu: string;
    memory: string;
    sandboxVolume: Omit<V1Volume, 'name'>;
    /**
     * Warm pods: stdin open for exactly one attach (the task), closed for good after it; `many`: session pods, open
     * for one attach per run.
     */
    stdin?: boolean | 'many';
    activeDeadlineSeconds?: number;
  },
): V1PodSpec {
  return {
    restartPolicy: 'Never',
    ...(parts.activeDeadlineSeconds ? { activeDeadlineSeconds: parts.activeDeadlineSeconds } : {}),
    ...(policy.runtimeClassName ? { runtimeClassName: policy.runtimeClassName } : {}),
    tolerations: [{ key: 'sandbox.gke.io/runtime', operator: 'Equal', value: 'gvisor', effect: 'NoSchedule' }],
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    // No cluster DNS: a name lookup from the sandbox gets nothing.
    dnsPolicy: 'None',
    dnsConfig: { nameservers: ['127.0.0.1'] },
    terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
    securityContext: {
      runAsNonRoot: true,
      runAsUser: SANDBOX_UID,
      runAsGroup: SANDBOX_UID,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    containers: [
      {
        name: CONTAINER_NAME,
        image: parts.image,
        imagePullPolicy: 'IfNotPresent',
        command: parts.command,
        workingDir: SCRATCH_DIR,
        env: Object.entries(parts.env).map(([k, v]) => ({ name: k, value: v })),
        ...(parts.stdin ? { stdin: true, stdinOnce: parts.stdin !== 'many' } : {}),
        securityContext: {
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
          readOnlyRootFilesystem: true,
          runAsNonRoot: true,
          privileged: false,
        },
        resources: {
          requests: {
            cpu: smaller(policy.requestCpu, parts.cpu, cpuMillis),
            memory: smaller(policy.requestMemory, parts.memory, bytes),
            'ephemeral-storage': smaller('64Mi', policy.scratchSize, bytes),
          },
          limits: { cpu: parts.cpu, memory: parts.memory, 'ephemeral-storage': policy.scratchSize },
        },
        volumeMounts: [
          { name: 'code', mountPath: SANDBOX_DIR, readOnly: !parts.stdin },
          { name: 'out', mountPath: OUTPUT_DIR },
          { name: 'scratch', mountPath: SCRATCH_DIR },
        ],
        terminationMessagePolicy: 'File',
      },
    ],
    volumes: [
      { name: 'code', ...parts.sandboxVolume },
      // Output files count against the same ephemeral storage as the scratch space.
      { name: 'out', emptyDir: { sizeLimit: policy.scratchSize } },
      { name: 'scratch', emptyDir: { sizeLimit: policy.scratchSize } },
    ],
  };
}

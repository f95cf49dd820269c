import type { LauncherTask } from '../../core/launcher-protocol';
import {
  buildConfigMap,
  buildJob,
  buildLauncherConfigMap,
  launcherConfigMapName,
  launcherTask,
  ownerReferenceTo,
  SANDBOX_UID,
} from '../../core/manifests';
import { DEFAULT_POLICY } from '../../core/policy';
import { validateInput } from '../../core/validate';

const policy = {
  ...DEFAULT_POLICY,
  images: {
    python: 'img/python:1',
    bash: 'img/bash:1',
    javascript: 'img/javascript:1',
    typescript: 'img/javascript:1',
  },
};
const request = validateInput(
  {
    code: 'print(1)',
    files: [
      { name: 'data.csv', content: 'a,b' },
      { name: 'blob.bin', content: 'AAEC', encoding: 'base64' },
    ],
    env: { FOO: 'bar' },
    limits: { cpu: '250m', memory: '256Mi' },
    timeoutSeconds: 30,
  },
  policy,
);
const spec = { executionId: 'exec-1', attempt: 2, namespace: 'sbx', request, policy, launcherSource: '# launcher' };

describe('buildJob', () => {
  const job = buildJob(spec);
  const pod = job.spec!.template.spec!;
  const c = pod.containers[0];

  test('is hardened as Pod Security "restricted" requires, and more', () => {
    expect(pod.runtimeClassName).toBe('gvisor');
    expect(pod.tolerations).toContainEqual({
      key: 'sandbox.gke.io/runtime',
      operator: 'Equal',
      value: 'gvisor',
      effect: 'NoSchedule',
    });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.enableServiceLinks).toBe(false);
    expect(pod.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: SANDBOX_UID,
      runAsGroup: SANDBOX_UID,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      privileged: false,
    });
    expect(pod.dnsPolicy).toBe('None');
    expect(pod.restartPolicy).toBe('Never');
  });

  test('never re-runs the program and has a server-side deadline and a TTL backstop', () => {
    expect(job.spec!.backoffLimit).toBe(0);
    expect(job.spec!.activeDeadlineSeconds).toBe(30 + policy.startupAllowanceSeconds);
    expect(job.spec!.ttlSecondsAfterFinished).toBeGreaterThan(0);
  });

  test('sets requests and limits, including ephemeral storage, with a size-limited scratch dir', () => {
    expect(c.resources).toEqual({
      requests: { cpu: '100m', memory: '128Mi', 'ephemeral-storage': '64Mi' },
      limits: { cpu: '250m', memory: '256Mi', 'ephemeral-storage': policy.scratchSize },
    });
    expect(pod.volumes).toContainEqual({ name: 'scratch', emptyDir: { sizeLimit: policy.scratchSize } });
    expect(pod.volumes).toContainEqual({ name: 'out', emptyDir: { sizeLimit: policy.scratchSize } });
    expect(c.volumeMounts).toEqual([
      { name: 'code', mountPath: '/sandbox', readOnly: true },
      { name: 'out', mountPath: '/sandbox/out' },
      { name: 'scratch', mountPath: '/tmp' },
    ]);
  });

  test('requests never exceed limits', () => {
    const small = buildJob({ ...spec, request: { ...request, cpu: '50m', memory: '64Mi' } });
    expect(small.spec!.template.spec!.containers[0].resources!.requests).toMatchObject({ cpu: '50m', memory: '64Mi' });
  });

  test('runs the launcher on the mounted task: the program, its limits, caps and variables are in the task', () => {
    expect(c.command).toEqual(['python3', '/sandbox/launcher.py', '--task', '/sandbox/task.json']);
    expect(c.image).toBe('img/python:1');
    // The program's own variables travel in the task (the launcher adds them), not in the pod spec.
    expect(c.env).toEqual(expect.arrayContaining([{ name: 'HOME', value: '/tmp' }]));
    expect(c.env!.find((e) => e.name === 'FOO')).toBeUndefined();
    const task = JSON.parse(buildConfigMap(spec).data!['task.json']) as LauncherTask;
    expect(task).toEqual({
      executionId: 'exec-1',
      attempt: 2,
      file: 'main.py',
      command: ['python3', '/sandbox/main.py'],
      env: { FOO: 'bar' },
      timeoutSeconds: 30,
      stdoutCap: policy.stdoutCapBytes,
      stderrCap: policy.stderrCapBytes,
      outDir: '/sandbox/out',
      filesMaxCount: policy.outputFilesMaxCount,
      fileCap: policy.outputFileCapBytes,
      filesCap: policy.outputFilesCapBytes,
      displaysMaxCount: policy.displaysMaxCount,
      displaysCap: policy.displaysCapBytes,
    });
    // The same document a warm sandbox is handed, less the program and files the ConfigMap mounts.
    const { code, files, ...rest } = launcherTask('exec-1', 2, request, policy, 'handed');
    expect(rest).toEqual(task);
    expect({ code, files }).toEqual({ code: request.code, files: request.files });
  });

  test("mounts the launcher from the namespace's launcher ConfigMap, code and files from the one of the same name", () => {
    const code = pod.volumes!.find((v) => v.name === 'code')!.projected!;
    expect(code.defaultMode).toBe(0o444);
    const [launcher, own] = code.sources!.map((s) => s.configMap!);
    expect(launcher).toEqual({
      name: launcherConfigMapName('# launcher'),
      items: [{ key: 'launcher.py', path: 'launcher.py' }],
    });
    expect(own.name).toBe(job.metadata!.name);
    expect(own.items).toEqual([
      { key: 'task.json', path: 'task.json' },
      { key: 'code', path: 'main.py' },
      { key: 'file.data.csv', path: 'files/data.csv' },
      { key: 'file.blob.bin', path: 'files/blob.bin' },
    ]);
    // Neither is optional: a pod never starts without its launcher.
    expect(code.sources!.every((s) => s.configMap!.optional === undefined)).toBe(true);
  });

  test('labels Job and pod with project, execution and attempt', () => {
    const labels = {
      'app.kubernetes.io/managed-by': 'durable-sandbox',
      'durable-sandbox.dev/execution': expect.stringMatching(/^[0-9a-f]{16}$/),
      'durable-sandbox.dev/attempt': '2',
    };
    expect(job.metadata!.labels).toEqual(labels);
    expect(job.spec!.template.metadata!.labels).toEqual(labels);
    expect(job.metadata!.annotations!['durable-sandbox.dev/execution-id']).toBe('exec-1');
  });

  test('runtimeClassName can be turned off by policy', () => {
    expect(
      buildJob({ ...spec, policy: { ...policy, runtimeClassName: '' } }).spec!.template.spec!.runtimeClassName,
    ).toBeUndefined();
  });

  test('bash uses its own file and command', () => {
    const bash = buildJob({ ...spec, request: { ...request, language: 'bash' } });
    const bc = bash.spec!.template.spec!.containers[0];
    expect(
      JSON.parse(buildConfigMap({ ...spec, request: { ...request, language: 'bash' } }).data!['task.json']),
    ).toMatchObject({ file: 'main.sh', command: ['bash', '/sandbox/main.sh'] });
    expect(bash.spec!.template.spec!.volumes![0].projected!.sources![1].configMap!.items).toContainEqual({
      key: 'code',
      path: 'main.sh',
    });
    expect(bc.image).toBe('img/bash:1');
  });
});

describe('buildConfigMap', () => {
  test('holds the task, the code and the files (not the launcher), immutable', () => {
    const cm = buildConfigMap(spec);
    expect(cm.metadata!.name).toBe(buildJob(spec).metadata!.name);
    expect(cm.immutable).toBe(true);
    expect(cm.data).toEqual({
      'task.json': expect.any(String),
      code: 'print(1)',
      'file.data.csv': 'a,b',
    });
    expect(cm.binaryData).toEqual({ 'file.blob.bin': 'AAEC' });
  });
});

describe('buildLauncherConfigMap', () => {
  test("holds the launcher, immutable, named by its content; not an attempt's object", () => {
    const cm = buildLauncherConfigMap('sbx', '# launcher');
    expect(cm.metadata!.name).toMatch(/^ds-launcher-[0-9a-f]{12}$/);
    expect(cm.metadata!.name).toBe(launcherConfigMapName('# launcher'));
    expect(launcherConfigMapName('# launcher, changed')).not.toBe(cm.metadata!.name);
    expect(cm.immutable).toBe(true);
    expect(cm.data).toEqual({ 'launcher.py': '# launcher' });
    expect(cm.metadata!.labels).toEqual({
      'app.kubernetes.io/managed-by': 'durable-sandbox',
      'durable-sandbox.dev/launcher': cm.metadata!.name!.slice('ds-launcher-'.length),
    });
    expect(cm.metadata!.labels!['durable-sandbox.dev/execution']).toBeUndefined();
  });
});

test('ownerReferenceTo points at the Job', () => {
  expect(ownerReferenceTo({ name: 'j', uid: 'u' })).toEqual({
    apiVersion: 'batch/v1',
    kind: 'Job',
    name: 'j',
    uid: 'u',
    blockOwnerDeletion: false,
  });
});

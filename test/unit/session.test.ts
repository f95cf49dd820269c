/** Sessions in pure terms (core/session.ts): options with their defaults and limits, a run's input, the pod. */
import { SANDBOX_UID } from '../../core/manifests';
import { DEFAULT_POLICY } from '../../core/policy';
import { LABELS } from '../../core/names';
import { buildPoolPod, poolRef } from '../../core/pool';
import {
  buildSessionPod,
  poolPodFitsSession,
  sessionClaimPatch,
  SESSION_DEFAULTS,
  SESSION_LANGUAGES,
  sessionPodName,
  sessionSelector,
  validateSessionOptions,
  validateSessionRun,
} from '../../core/session';
import { InvalidInputError } from '../../core/validate';

const policy = DEFAULT_POLICY;

test('defaults: the default language, the policy limits, the idle timeout and lifetime', () => {
  const spec = validateSessionOptions(undefined, policy);
  expect(spec).toMatchObject({
    language: SESSION_LANGUAGES[0],
    cpu: policy.defaultCpu,
    memory: policy.defaultMemory,
    idleTimeoutSeconds: SESSION_DEFAULTS.idleTimeoutSeconds,
    maxLifetimeSeconds: SESSION_DEFAULTS.maxLifetimeSeconds,
  });
});

test('bad options name the field and the limit they broke', () => {
  const bad = (o: unknown) => {
    try {
      validateSessionOptions(o, policy);
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidInputError);
      return (e as InvalidInputError).field;
    }
    throw new Error('accepted');
  };
  expect(bad({ language: 'ruby' })).toBe('language');
  expect(bad({ idleTimeoutSeconds: 0 })).toBe('idleTimeoutSeconds');
  expect(bad({ maxLifetimeSeconds: 10 ** 9 })).toBe('maxLifetimeSeconds');
  expect(bad({ timeoutSeconds: policy.maxTimeoutSeconds + 1 })).toBe('timeoutSeconds');
  expect(bad({ limits: { memory: '1Ti' } })).toMatch(/memory/);
});

test("a run takes the session's language, limits and env, and its own time limit within the cap", () => {
  const spec = validateSessionOptions({ timeoutSeconds: 5, env: { A: '1' } }, policy);
  expect(validateSessionRun({ code: 'x' }, spec, policy)).toMatchObject({ timeoutSeconds: 5, env: { A: '1' } });
  expect(validateSessionRun({ code: 'x', timeoutSeconds: 9 }, spec, policy).timeoutSeconds).toBe(9);
  expect(() => validateSessionRun({ code: '' }, spec, policy)).toThrow(InvalidInputError);
});

test("the session's pod: hardened like every sandbox, one interpreter for many runs, ended by the kubelet past its lifetime", () => {
  const spec = validateSessionOptions({ maxLifetimeSeconds: 120 }, policy);
  const pod = buildSessionPod({ sessionId: 's-1', generation: 2, spec, policy, launcherSource: '# launcher' });
  expect(pod.metadata!.name).toBe(sessionPodName('s-1', 2));
  expect(sessionSelector('s-1')).toContain('durable-sandbox.dev/session=');
  const c = pod.spec!.containers[0];
  expect(c.command).toEqual(expect.arrayContaining(['--session', '--task-dir', '/sandbox']));
  expect(c).toMatchObject({ stdin: true, stdinOnce: false });
  expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
  expect(pod.spec!.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: SANDBOX_UID });
  expect(pod.spec!.automountServiceAccountToken).toBe(false);
  expect(pod.spec!.activeDeadlineSeconds).toBe(120 + policy.startupAllowanceSeconds);
});

describe('a session taking a warm pool pod', () => {
  const config = { size: 2, maxIdleSeconds: 600 };
  const pool = poolRef('q', 'python', policy, '# launcher');
  const poolPod = (ageSeconds: number) => {
    const pod = buildPoolPod({ pool, namespace: 'ns', policy, launcherSource: '# launcher', config, owner: 'pool-wf' });
    pod.metadata!.name = 'ds-pool-python-abc';
    pod.metadata!.resourceVersion = '42';
    pod.status = { phase: 'Running', startTime: new Date(Date.now() - ageSeconds * 1000) };
    return pod;
  };

  test('pool pods keep stdin open past one attach (a session sends many runs); the launcher reads one one-shot task', () => {
    expect(poolPod(0).spec!.containers[0]).toMatchObject({ stdin: true, stdinOnce: false });
  });

  test('fits a session with the default limits whose lifetime the pod deadline covers, and no other', () => {
    const spec = validateSessionOptions(undefined, policy);
    expect(poolPodFitsSession(poolPod(10), spec, policy, Date.now())).toBe(true);
    const long = validateSessionOptions({ maxLifetimeSeconds: 24 * 3600 }, policy);
    expect(poolPodFitsSession(poolPod(10), long, policy, Date.now())).toBe(false);
    const big = validateSessionOptions({ limits: { memory: '1Gi' } }, policy);
    expect(poolPodFitsSession(poolPod(10), big, policy, Date.now())).toBe(false);
  });

  test("the claim is conditional, drops the pool's labels and owner for the session's, and sets the session's deadline", () => {
    const spec = validateSessionOptions({ maxLifetimeSeconds: 300 }, policy);
    const patch = sessionClaimPatch(poolPod(30), { sessionId: 's-1', generation: 3, spec, policy, now: Date.now() });
    expect(patch).toEqual({
      metadata: {
        resourceVersion: '42',
        labels: {
          [LABELS.pool]: null,
          [LABELS.poolState]: null,
          [LABELS.template]: null,
          [LABELS.managedBy]: expect.any(String),
          [LABELS.session]: expect.any(String),
          [LABELS.sessionGeneration]: '3',
        },
        annotations: expect.objectContaining({
          'durable-sandbox.dev/pool-owner': null,
          'durable-sandbox.dev/session-id': 's-1',
        }),
      },
      spec: { activeDeadlineSeconds: expect.any(Number) },
    });
    const deadline = (patch as { spec: { activeDeadlineSeconds: number } }).spec.activeDeadlineSeconds;
    expect(deadline).toBeGreaterThanOrEqual(30 + 300 + policy.startupAllowanceSeconds);
    expect(deadline).toBeLessThanOrEqual(32 + 300 + policy.startupAllowanceSeconds);
    expect(sessionSelector('s-1')).toContain(
      (patch as { metadata: { labels: Record<string, string> } }).metadata.labels[LABELS.session],
    );
  });
});

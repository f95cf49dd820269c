import { ApiException } from '@kubernetes/client-node';
import { isAlreadyExists, isNotFound, kubeFailure } from '../../activities/kube';

const status = (code: number, reason: string, message = reason) =>
  new ApiException(code, 'HTTP', JSON.stringify({ kind: 'Status', reason, message }), {});

test('only AlreadyExists is an adoptable 409; a quota Conflict is retried', () => {
  expect(isAlreadyExists(status(409, 'AlreadyExists'))).toBe(true);
  const conflict = status(
    409,
    'Conflict',
    'Operation cannot be fulfilled on resourcequotas "sandbox-quota": the object has been modified',
  );
  expect(isAlreadyExists(conflict)).toBe(false);
  expect(kubeFailure(conflict, 'create Job')).toMatchObject({ type: 'KubernetesUnavailable', nonRetryable: false });
});

test.each([
  // Also what a freshly restarted apiserver answers until its authorizer has synced: retried.
  [403, 'Forbidden', 'jobs.batch is forbidden: User cannot create', 'KubernetesForbidden', false],
  [401, 'Unauthorized', 'Unauthorized', 'KubernetesForbidden', false],
  [404, 'NotFound', 'namespaces "nope" not found', 'KubernetesRejected', true],
  [403, 'Forbidden', 'exceeded quota: sandbox-quota, requested: configmaps=1', 'QuotaExceeded', false],
  [422, 'Invalid', 'Job.batch is invalid', 'KubernetesRejected', true],
  [500, 'InternalError', 'etcdserver: request timed out', 'KubernetesUnavailable', false],
  [429, 'TooManyRequests', 'slow down', 'KubernetesUnavailable', false],
])('HTTP %i %s -> %s', (code, reason, message, type, nonRetryable) => {
  expect(kubeFailure(status(code, reason, message), 'x')).toMatchObject({ type, nonRetryable });
});

test('network errors are retried; 404 is recognised', () => {
  expect(kubeFailure(new Error('connect ECONNREFUSED 127.0.0.1:6443'), 'x')).toMatchObject({
    type: 'KubernetesUnavailable',
    nonRetryable: false,
  });
  expect(isNotFound(status(404, 'NotFound'))).toBe(true);
});

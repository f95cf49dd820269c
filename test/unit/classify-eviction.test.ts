/**
 * Evictions, on a real pod object: the kubelet evicted it because the program wrote past its scratch (/tmp) limit
 * (captured on the local stack during the hostile-input suite's disk case).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { V1Job, V1Pod } from '@kubernetes/client-node';
import { classify, observe } from '../../core/classify';

const NOW = Date.parse('2030-01-01T00:00:00Z');
const { job, pod } = JSON.parse(
  readFileSync(path.join(__dirname, '..', 'fixtures', 'pod-status', 'evicted-scratch-limit.json'), 'utf8'),
) as { job: V1Job; pod: V1Pod };

function verdict(p: V1Pod) {
  return classify({ job, pod: p, progress: observe({}, p, NOW), now: NOW, unschedulableGraceSeconds: 30 });
}

test('the captured pod is what the kubelet leaves: Failed/Evicted, container ended by SIGTERM, no DisruptionTarget', () => {
  expect(pod.status).toMatchObject({ phase: 'Failed', reason: 'Evicted' });
  expect(pod.status?.containerStatuses?.[0].state?.terminated?.exitCode).toBe(143);
  expect(pod.status?.conditions?.some((c) => c.type === 'DisruptionTarget')).toBe(false);
});

test("outgrowing the scratch limit is the program's doing: not retried, not reported as exit 143", () => {
  expect(verdict(pod)).toEqual({
    state: 'infra',
    error: {
      reason: 'StorageLimitExceeded',
      message: 'Usage of EmptyDir volume "scratch" exceeds the limit "256Mi".',
      retryable: false,
    },
  });
});

test('the pod and container ephemeral-storage limit evictions are recognised too', () => {
  for (const message of [
    'Pod ephemeral local storage usage exceeds the total limit of containers 256Mi. ',
    'Container sandbox exceeded its local ephemeral storage limit "256Mi". ',
  ]) {
    expect(verdict({ ...pod, status: { ...pod.status, message } })).toMatchObject({
      state: 'infra',
      error: { reason: 'StorageLimitExceeded', retryable: false },
    });
  }
});

test("any other eviction is the node's doing: retried with fresh resources", () => {
  const message = 'The node was low on resource: memory. ';
  expect(verdict({ ...pod, status: { ...pod.status, message } })).toMatchObject({
    state: 'infra',
    error: { reason: 'Evicted', retryable: true },
  });
});

test('an eviction seen after the pod got its deletion timestamp is still classified as the eviction', () => {
  const deleted = { ...pod, metadata: { ...pod.metadata, deletionTimestamp: new Date(NOW) } };
  expect(verdict(deleted)).toMatchObject({ state: 'infra', error: { reason: 'StorageLimitExceeded' } });
});

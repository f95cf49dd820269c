/**
 * A warm pool is spare capacity: it gives way when executions or other pools wait for a node, and never lets a pod
 * of its own wait for a node ahead of them.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { LABELS, MANAGED_BY } from '../../core/names';
import { nodePressure, poolAllowance, waitsForNode, type PoolRef } from '../../core/pool';

const pool: PoolRef = { id: 'python-aaaaaaaaaaaa', language: 'python', template: 't' };

function pod(
  name: string,
  labels: Record<string, string>,
  status: 'running' | 'unschedulable' | 'pending' | 'deleting' = 'running',
): V1Pod {
  return {
    metadata: {
      name,
      labels: { [LABELS.managedBy]: MANAGED_BY, ...labels },
      ...(status === 'deleting' ? { deletionTimestamp: new Date() } : {}),
    },
    status:
      status === 'running'
        ? { phase: 'Running' }
        : {
            phase: 'Pending',
            conditions:
              status === 'pending'
                ? [{ type: 'PodScheduled', status: 'True' }]
                : [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable' }],
          },
  };
}
const ready = (name: string, poolId = pool.id, status?: 'running' | 'unschedulable' | 'deleting') =>
  pod(name, { [LABELS.pool]: poolId, [LABELS.poolState]: 'ready' }, status);
const execution = (name: string, status?: 'running' | 'unschedulable') =>
  pod(name, { [LABELS.execution]: name }, status);

test('only a pending pod the scheduler found no node for waits for a node', () => {
  expect(waitsForNode(execution('a', 'unschedulable'))).toBe(true);
  expect(waitsForNode(execution('b'))).toBe(false);
  expect(waitsForNode(pod('c', {}, 'pending'))).toBe(false);
  expect(waitsForNode(ready('d', pool.id, 'deleting'))).toBe(false);
});

test('with nothing waiting, the pool keeps its size and fills up', () => {
  const pressure = nodePressure([ready('p1'), ready('p2'), execution('e1')], pool);
  expect(pressure).toEqual({ executionsWaiting: 0, otherPoolsWaiting: 0, ownWaiting: [] });
  expect(poolAllowance(2, pressure)).toEqual({ keep: 2, create: true });
});

test('an execution waiting for a node (a cold pod, or a claimed pool pod) takes the whole pool', () => {
  for (const waiting of [
    execution('e1', 'unschedulable'),
    pod('c1', { [LABELS.pool]: 'bash-bbbbbbbbbbbb', [LABELS.poolState]: 'claimed' }, 'unschedulable'),
  ]) {
    const pressure = nodePressure([ready('p1'), ready('p2'), waiting], pool);
    expect(pressure.executionsWaiting).toBe(1);
    expect(poolAllowance(2, pressure)).toMatchObject({ keep: 0, create: false });
  }
});

test("another pool's pods waiting: each pool keeps at most one", () => {
  const pressure = nodePressure([ready('p1'), ready('p2'), ready('q1', 'bash-bbbbbbbbbbbb', 'unschedulable')], pool);
  expect(pressure).toMatchObject({ executionsWaiting: 0, otherPoolsWaiting: 1 });
  expect(poolAllowance(2, pressure)).toMatchObject({ keep: 1, create: true });
  expect(poolAllowance(0, pressure)).toMatchObject({ keep: 0 });
});

test('a pod of its own waiting for a node: it is withdrawn and no other is started', () => {
  const own = ready('p2', pool.id, 'unschedulable');
  const pressure = nodePressure([ready('p1'), own], pool);
  expect(pressure.ownWaiting).toEqual([own]);
  expect(poolAllowance(2, pressure)).toMatchObject({ keep: 2, create: false });
});

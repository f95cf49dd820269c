import { phaseDurations, reconcileReason } from '../../core/metrics';
import type { PhaseEvent } from '../../core/types';

const t = (phase: PhaseEvent['phase'], at: number, attempt = 1): PhaseEvent => ({ phase, at, attempt });

test('phase durations come from the last attempt, cold or warm, in seconds', () => {
  const cold = [
    t('started', 0),
    t('jobCreated', 100),
    t('containerStarted', 1100),
    t('containerFinished', 1200),
    t('outputCollected', 1210),
    t('cleanedUp', 3210),
  ];
  expect(phaseDurations(cold)).toEqual([
    { phase: 'acquire', seconds: 0.1 },
    { phase: 'start', seconds: 1 },
    { phase: 'run', seconds: 0.1 },
    { phase: 'collect', seconds: 0.01 },
    { phase: 'cleanup', seconds: 2 },
  ]);
  // A retried execution: attempt 1's marks are not the last attempt's.
  const retried = [
    t('started', 0),
    t('jobCreated', 50),
    t('cleanedUp', 900),
    t('claimed', 1000, 2),
    t('containerStarted', 1080, 2),
  ];
  expect(phaseDurations(retried)).toEqual([
    { phase: 'acquire', seconds: 1 },
    { phase: 'start', seconds: 0.08 },
  ]);
  expect(phaseDurations([t('started', 0)])).toEqual([]);
});

test('reconciler reasons become a few labels', () => {
  expect(reconcileReason('older than 7320 s')).toBe('too_old');
  expect(reconcileReason('owner closed')).toBe('owner_closed');
  expect(reconcileReason('owner unknown to Temporal')).toBe('owner_missing');
});

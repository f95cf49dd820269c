/** What the activities need from the outside world; given to createActivities by the worker (or a test). */
import type { ExecutionPolicy } from '../core/policy';
import type { Kube } from './kube';

export interface ActivityDeps {
  kube: Kube;
  policy: ExecutionPolicy;
  /** Source of launcher/launcher.py, shipped into every sandbox. */
  launcherSource: string;
}

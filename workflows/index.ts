/** Every workflow the worker registers. */
export { executeCode } from './execute-code';
export { reconcileSandboxes } from './reconcile';
export { warmPool } from './warm-pool';
export { session } from './session';
export { workerPing } from './ping';

/** The worker (worker/main.ts) pointed at the local stack, unless KUBECONFIG / TEMPORAL_ADDRESS point elsewhere. */
import { applyStackEnv } from '../cli/local-stack';

applyStackEnv();
// eslint-disable-next-line @typescript-eslint/no-require-imports -- after the environment is set
require('../worker/main');

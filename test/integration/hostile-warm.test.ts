/** The hostile suite (hostile.suite.ts) on warm sandboxes: pre-started pool pods, each used once. */
import { hostileSuite } from './hostile.suite';

hostileSuite('warm');

/** The hostile suite (hostile.suite.ts) on cold sandboxes: a Job made for each execution. */
import { hostileSuite } from './hostile.suite';

hostileSuite('cold');

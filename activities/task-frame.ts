/**
 * The framing of a warm sandbox's task: a header line with the task's length and SHA-256, then its JSON. The
 * launcher (launcher/launcher.py, warm mode) accepts it only whole and with a matching checksum.
 */
import { createHash } from 'node:crypto';
import { TASK_FORMAT } from '../core/launcher-protocol';
import type { LauncherTask } from '../core/launcher-protocol';
export { TASK_FORMAT };

export function frameTask(task: LauncherTask): Buffer {
  const payload = Buffer.from(JSON.stringify(task), 'utf8');
  const digest = createHash('sha256').update(payload).digest('hex');
  return Buffer.concat([Buffer.from(`${TASK_FORMAT} ${payload.length} ${digest}\n`, 'ascii'), payload]);
}

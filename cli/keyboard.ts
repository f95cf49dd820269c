/**
 * Ctrl-C as a key, not a signal, while a command runs on a terminal.
 *
 * A terminal turns Ctrl-C into SIGINT for every process of its foreground group. Run through `npx`, that group also
 * holds npm and the `sh -c` it starts the command with, and a non-interactive dash (Debian's sh) dies of SIGINT at
 * once: npm then re-raises it on itself, and the user's shell abandons what follows (`npx durable-sandbox run …;
 * echo done`) while this command is still cancelling its execution. With the terminal not turning Ctrl-C into a
 * signal (raw mode, as full-screen programs have it) only this process hears it, as a byte on stdin, and its own exit
 * status is what npm and the shell see.
 *
 * Only when stdin is the terminal and this process is in its foreground group (read from /proc; elsewhere, and in
 * the background, signals alone do the work); the terminal's mode comes back when the command releases it (and from
 * Node at exit). While held, keys typed are not echoed and Ctrl-Z does not suspend.
 */
import { readFileSync } from 'node:fs';

const CTRL_C = 0x03;

/** Whether this process is in its terminal's foreground process group (Linux; false where it cannot tell). */
function inForeground(): boolean {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const [pgrp, tpgid] = [Number(fields[2]), Number(fields[5])];
    return pgrp > 0 && pgrp === tpgid;
  } catch {
    return false;
  }
}

/**
 * Takes Ctrl-C from the keyboard as a key: each press calls `onCtrlC`. Returns what gives the terminal back (safe to
 * call more than once). Does nothing (and returns a no-op) when stdin is not this process's foreground terminal.
 */
export function ctrlCAsKey(onCtrlC: () => void, stdin: NodeJS.ReadStream = process.stdin): () => void {
  if (!stdin.isTTY || !inForeground()) return () => undefined;
  const onData = (data: Buffer): void => {
    for (const byte of data) if (byte === CTRL_C) onCtrlC();
  };
  try {
    stdin.setRawMode(true);
  } catch {
    return () => undefined;
  }
  stdin.on('data', onData);
  stdin.resume();
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    stdin.off('data', onData);
    try {
      stdin.setRawMode(false);
    } catch {
      // the terminal is gone (hung up): nothing to give back
    }
    stdin.pause();
  };
}

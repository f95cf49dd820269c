/**
 * A session's workspace in pure terms and on this machine: the store's address and key, and launcher/workspace.py
 * saving a workspace and restoring it into another (exactly: extra files go, the launcher's own entries stay, the
 * launcher's digest is the same), and refusing to write outside the workspace whatever the archive holds.
 */
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseStoreUrl, workspaceKey } from '../../core/workspace';
import { LAUNCHER, WORKSPACE_HELPER } from '../helpers/launcher';

const HELPER = WORKSPACE_HELPER;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'ds-workspace-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function helper(mode: 'save' | 'restore', root: string, input?: Buffer) {
  const r = spawnSync('python3', [HELPER, mode, root], { input, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`workspace.py ${mode} exited ${r.status}: ${r.stderr.toString()}`);
  return { stdout: r.stdout, stderr: r.stderr.toString() };
}

/** The launcher's own digest of a workspace (what a session run reports). */
function digest(root: string): { sig: string | null; entries: number; bytes: number } {
  const r = spawnSync('python3', [
    '-c',
    'import json, runpy, sys; print(json.dumps(runpy.run_path(sys.argv[1], run_name="lib")["workspace_digest"](sys.argv[2])))',
    LAUNCHER,
    root,
  ]);
  if (r.status !== 0) throw new Error(r.stderr.toString());
  return JSON.parse(r.stdout.toString()) as { sig: string | null; entries: number; bytes: number };
}

/** A tar.gz made by Python's tarfile from [name, kind, content/target] members (for archives no save would make). */
function archive(members: [string, 'file' | 'link', string][]): Buffer {
  const script = `
import io, json, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as tf:
    for name, kind, value in json.loads(sys.argv[1]):
        info = tarfile.TarInfo(name)
        if kind == "link":
            info.type, info.linkname = tarfile.SYMTYPE, value
            tf.addfile(info)
        else:
            data = value.encode()
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
sys.stdout.buffer.write(buf.getvalue())
`;
  const r = spawnSync('python3', ['-c', script, JSON.stringify(members)]);
  if (r.status !== 0) throw new Error(r.stderr.toString());
  return r.stdout;
}

test('the store address and the key of a session (its id hashed)', () => {
  expect(parseStoreUrl('s3://ds-workspaces')).toEqual({ bucket: 'ds-workspaces', prefix: '' });
  expect(parseStoreUrl('s3://b.example/team/a/')).toEqual({ bucket: 'b.example', prefix: 'team/a/' });
  expect(() => parseStoreUrl('gs://bucket')).toThrow(/s3:\/\/bucket/);
  expect(() => parseStoreUrl('s3://Bad_Bucket')).toThrow(/bucket name/);
  const key = workspaceKey('team/', 'my session/../x');
  expect(key).toMatch(/^team\/sessions\/[0-9a-f]{16}\/workspace\.tar\.gz$/);
  expect(workspaceKey('', 'other')).not.toBe(workspaceKey('', 'my session/../x'));
});

test('save then restore gives the same workspace: files, modes, times, directories, links; extras go', () => {
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  mkdirSync(path.join(a, 'proj', 'deep'), { recursive: true });
  writeFileSync(path.join(a, 'data.csv'), 'a,b\n1,2\n');
  writeFileSync(path.join(a, 'proj', 'deep', 'model.bin'), Buffer.alloc(100_000, 7));
  writeFileSync(path.join(a, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
  symlinkSync('data.csv', path.join(a, 'latest'));
  mkdirSync(path.join(a, '.durable-sandbox-python-1'));
  writeFileSync(path.join(a, '.durable-sandbox-python-1', 'sitecustomize.py'), '# the launcher');
  const saved = helper('save', a).stdout;
  expect(saved.length).toBeGreaterThan(0);
  expect(saved.length).toBeLessThan(20_000); // compressed

  // The new pod's workspace: the launcher's own entry (kept), replay leftovers (removed), a dir where a file goes.
  mkdirSync(path.join(b, '.durable-sandbox-python-9'), { recursive: true });
  writeFileSync(path.join(b, '.durable-sandbox-python-9', 'sitecustomize.py'), '# this pod');
  writeFileSync(path.join(b, 'stale.txt'), 'from a replayed run');
  mkdirSync(path.join(b, 'data.csv'));
  mkdirSync(path.join(b, 'gone', 'deeper'), { recursive: true });
  helper('restore', b, saved);

  expect(readFileSync(path.join(b, 'data.csv'), 'utf8')).toBe('a,b\n1,2\n');
  expect(readFileSync(path.join(b, 'proj', 'deep', 'model.bin')).equals(Buffer.alloc(100_000, 7))).toBe(true);
  expect(lstatSync(path.join(b, 'run.sh')).mode & 0o777).toBe(0o755);
  expect(readlinkSync(path.join(b, 'latest'))).toBe('data.csv');
  expect(existsSync(path.join(b, 'stale.txt'))).toBe(false);
  expect(existsSync(path.join(b, 'gone'))).toBe(false);
  expect(readFileSync(path.join(b, '.durable-sandbox-python-9', 'sitecustomize.py'), 'utf8')).toBe('# this pod');
  expect(existsSync(path.join(b, '.durable-sandbox-python-1'))).toBe(false);
  // The launcher's digest of the restored workspace is the saved one's: no second save for the same files.
  expect(digest(b)).toEqual(digest(a));
  expect(digest(a)).toMatchObject({ entries: 6, bytes: 8 + 100_000 + 10 });
});

test("the launcher's digest changes when a file does, and leaves out the launcher's own entries", () => {
  writeFileSync(path.join(dir, 'x.txt'), 'one');
  const first = digest(dir);
  mkdirSync(path.join(dir, '.durable-sandbox-python-2'));
  writeFileSync(path.join(dir, '.durable-sandbox-python-2', 'x'), 'launcher');
  expect(digest(dir)).toEqual(first);
  writeFileSync(path.join(dir, 'x.txt'), 'two!');
  expect(digest(dir).sig).not.toBe(first.sig);
});

test('a restore writes nothing outside the workspace, whatever the archive holds', () => {
  const root = path.join(dir, 'ws');
  const outside = path.join(dir, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  const evil = archive([
    ['../escaped.txt', 'file', 'no'],
    [`${outside}/abs.txt`, 'file', 'no'],
    ['out', 'link', outside],
    ['out/through-link.txt', 'file', 'no'],
    ['.durable-sandbox-python-1/sitecustomize.py', 'file', 'no'],
    ['ok.txt', 'file', 'yes'],
  ]);
  const { stderr } = helper('restore', root, evil);
  expect(readFileSync(path.join(root, 'ok.txt'), 'utf8')).toBe('yes');
  expect(existsSync(path.join(dir, 'escaped.txt'))).toBe(false);
  expect(existsSync(path.join(outside, 'abs.txt'))).toBe(false);
  expect(existsSync(path.join(outside, 'through-link.txt'))).toBe(false);
  expect(existsSync(path.join(root, '.durable-sandbox-python-1'))).toBe(false);
  expect(stderr).toMatch(/skipped/);
});

test("the interpreter's checkpoints go with the workspace (not in its digest); a half-written one and a link do not", () => {
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  mkdirSync(path.join(a, '.durable-sandbox-state'), { recursive: true });
  writeFileSync(path.join(a, 'notes.txt'), 'n');
  writeFileSync(path.join(a, '.durable-sandbox-state', 'python.state'), 'pickled');
  writeFileSync(path.join(a, '.durable-sandbox-state', 'bash.state.tmp'), 'half');
  symlinkSync('/etc/passwd', path.join(a, '.durable-sandbox-state', 'bash.state'));
  const before = digest(a);
  writeFileSync(path.join(a, '.durable-sandbox-state', 'python.state'), 'pickled again');
  expect(digest(a)).toEqual(before);
  // The new pod's own stale checkpoint goes; the saved one comes.
  mkdirSync(path.join(b, '.durable-sandbox-state'), { recursive: true });
  writeFileSync(path.join(b, '.durable-sandbox-state', 'old.state'), 'stale');
  helper('restore', b, helper('save', a).stdout);
  expect(readFileSync(path.join(b, '.durable-sandbox-state', 'python.state'), 'utf8')).toBe('pickled again');
  expect(readFileSync(path.join(b, 'notes.txt'), 'utf8')).toBe('n');
  for (const gone of ['bash.state.tmp', 'bash.state', 'old.state'])
    expect([gone, existsSync(path.join(b, '.durable-sandbox-state', gone))]).toEqual([gone, false]);
});

test("an archive cannot use the checkpoints' place to write anything else", () => {
  const b = path.join(dir, 'b');
  mkdirSync(b);
  const r = helper(
    'restore',
    b,
    archive([
      ['.durable-sandbox-state/deep/x.state', 'file', 'nested'],
      ['.durable-sandbox-state/link.state', 'link', '/etc/passwd'],
      ['.durable-sandbox-python-1/sitecustomize.py', 'file', 'planted'],
    ]),
  );
  expect(r.stderr).toMatch(/skipped: '\.durable-sandbox-state\/deep\/x\.state'/);
  expect(existsSync(path.join(b, '.durable-sandbox-state', 'deep'))).toBe(false);
  expect(existsSync(path.join(b, '.durable-sandbox-state', 'link.state'))).toBe(false);
  expect(existsSync(path.join(b, '.durable-sandbox-python-1'))).toBe(false);
});

/**
 * npm run bench:profile -- FILE.cpuprofile [--top N]: where a worker's CPU went, from a V8 CPU profile (a worker run
 * under `node --cpu-prof`, e.g. by `npm run bench:capacity -- --cpu-prof DIR`). Prints self time by package (or by
 * this project's folder), and the functions with the most self time; --skip leaves out the first seconds (the
 * worker's start: bundling the workflows, loading modules).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Where a script belongs: an npm package, a folder of this project, node's own code, or V8 itself. */
export function ownerOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node:' + url.slice(5).split('/')[0];
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const m = /\/(?:dist\/)?(activities|core|workflows|worker|client|cli|dev|integrations)\//.exec(url);
  if (m) return `(ours) ${m[1]}/`;
  if (url.includes('workflow-bundle') || url.startsWith('file:///workflow')) return '(workflow bundle)';
  return url.replace(/^file:\/\//, '');
}

export function summarize(profile: Profile, top = 25, skipS = 0): string {
  const self = new Map<number, number>();
  let t = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (t < skipS * 1e6) continue;
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const byOwner = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  for (const node of profile.nodes) {
    const us = self.get(node.id) ?? 0;
    if (!us) continue;
    const f = node.callFrame;
    if (f.functionName === '(idle)') continue;
    total += us;
    const owner = ownerOf(f.url, f.functionName);
    byOwner.set(owner, (byOwner.get(owner) ?? 0) + us);
    const file = f.url ? ` ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${owner}${file}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  }
  const wall = (profile.endTime - profile.startTime) / 1e6 - skipS;
  const rows = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(
        ([k, us]) => `${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`,
      )
      .join('\n');
  return [
    `busy ${(total / 1e6).toFixed(1)} s of ${wall.toFixed(1)} s profiled (the main thread; (garbage collector) and (program) included)`,
    '',
    'self time by owner:',
    rows(byOwner, 20),
    '',
    `top ${top} functions by self time:`,
    rows(byFunction, top),
  ].join('\n');
}

if (require.main === module) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' }, skip: { type: 'string', default: '0' } },
  });
  if (positionals.length !== 1) {
    process.stderr.write('usage: npm run bench:profile -- FILE.cpuprofile [--top N] [--skip SECONDS]\n');
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(positionals[0], 'utf8')) as Profile;
  process.stdout.write(`${summarize(profile, Number(values.top), Number(values.skip))}\n`);
}

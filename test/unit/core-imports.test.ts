/**
 * core/ has no import cycle (type imports count too): each module can be read, and changed, after the ones it uses.
 * The lint rules (eslint.config.mjs) guard the layers between folders; this guards the order inside core/.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

const CORE = path.join(__dirname, '..', '..', 'core');

function importsOf(file: string): string[] {
  const source = readFileSync(path.join(CORE, file), 'utf8');
  return [...source.matchAll(/from '\.\/([\w-]+)'/g)].map((m) => `${m[1]}.ts`);
}

test('no import cycle inside core/', () => {
  const files = readdirSync(CORE).filter((f) => f.endsWith('.ts'));
  const graph = new Map(files.map((f) => [f, importsOf(f)]));
  const cycles: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (f: string, trail: string[]): void => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'visiting') {
      cycles.push([...trail.slice(trail.indexOf(f)), f].join(' -> '));
      return;
    }
    state.set(f, 'visiting');
    for (const next of graph.get(f) ?? []) visit(next, [...trail, f]);
    state.set(f, 'done');
  };
  for (const f of files) visit(f, []);
  expect(cycles).toEqual([]);
});

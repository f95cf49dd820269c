/**
 * The launcher ships as one program (a ConfigMap key, or a `python3 -c` string in a waiting pod's command) but is
 * written as modules, one per concern (launcher/*.py), with its kernels as files of their own (launcher/kernels/).
 * In a checkout they run as they are (`python3 launcher/launcher.py`: the modules import each other with
 * `from NAME import *`); this puts them together: the entry's docstring, every module's standard-library imports
 * once, each module's body in the order the imports need them (so a name is defined before it is used at the top
 * level), the entry's body last, and each `kernel_source("FILE")` replaced by the kernel's text as a string.
 * Pure: the files come in as a map from their paths under launcher/.
 */

/** The files the launcher is made of, by path under launcher/ (e.g. 'protocol.py', 'kernels/python.py'). */
export type LauncherFiles = Readonly<Record<string, string>>;

const SIBLING = /^from (\w+) import \*(\s+#.*)?$/;
const TOP_IMPORT = /^(import \S.*|from \S+ import \S.*)$/;
const KERNEL_CALL = /kernel_source\("([\w.-]+)"\)/g;

interface Parsed {
  doc: string;
  siblings: string[];
  imports: string[];
  body: string;
}

/** A module's leading docstring (if any), its sibling and other top-level imports, and the rest. */
function parse(name: string, text: string, files: LauncherFiles): Parsed {
  let rest = text;
  let doc = '';
  const m = /^("""[\s\S]*?""")\n/.exec(rest);
  if (m) {
    doc = m[1];
    rest = rest.slice(m[0].length);
  }
  const siblings: string[] = [];
  const imports: string[] = [];
  const lines = rest.split('\n');
  let i = 0;
  for (; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === '') continue;
    const sib = SIBLING.exec(line);
    if (sib && files[`${sib[1]}.py`] !== undefined) siblings.push(sib[1]);
    else if (TOP_IMPORT.test(line)) imports.push(line);
    else break;
  }
  if (siblings.some((s) => s === name.replace(/\.py$/, ''))) throw new Error(`launcher/${name} imports itself`);
  return { doc, siblings, imports, body: lines.slice(i).join('\n').trimEnd() };
}

/** A Python string literal holding `text` exactly (a raw triple-quoted one, which needs no escaping). */
function rawLiteral(file: string, text: string): string {
  if (text.includes("'''") || text.endsWith('\\'))
    throw new Error(`launcher/kernels/${file} cannot be carried as a raw ''' string`);
  return `r'''${text}'''`;
}

export function assembleLauncher(files: LauncherFiles, entry = 'launcher.py'): string {
  const parsed = new Map<string, Parsed>();
  const order: string[] = [];
  const visiting = new Set<string>();
  const visit = (name: string): void => {
    if (parsed.has(name)) return;
    const text = files[name];
    if (text === undefined) throw new Error(`launcher/${name} is missing`);
    if (visiting.has(name)) throw new Error(`launcher modules import each other in a cycle through ${name}`);
    visiting.add(name);
    const p = parse(name, text, files);
    for (const s of p.siblings) visit(`${s}.py`);
    visiting.delete(name);
    parsed.set(name, p);
    order.push(name);
  };
  visit(entry);
  const imports: string[] = [];
  for (const name of order)
    for (const line of parsed.get(name)!.imports) if (!imports.includes(line)) imports.push(line);
  const head = parsed.get(entry)!;
  const sections = order
    .filter((n) => n !== entry)
    .map((n) => `# --- ${n} ${'-'.repeat(Math.max(3, 112 - n.length))}\n\n${parsed.get(n)!.body}`);
  const program = [head.doc, imports.join('\n'), ...sections, `# --- ${entry}\n\n${head.body}`]
    .filter(Boolean)
    .join('\n\n\n');
  return `${program.replace(KERNEL_CALL, (_, file: string) => {
    const kernel = files[`kernels/${file}`];
    if (kernel === undefined) throw new Error(`launcher/kernels/${file} is missing`);
    return rawLiteral(file, kernel);
  })}\n`;
}

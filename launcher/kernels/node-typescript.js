// durable-sandbox: TypeScript for Node.js programs, with TypeScript's own compiler (the `typescript` module of the
// image): a program or a session's run is type-checked first (a type error is the run's failure, with its line), then
// transpiled to the JavaScript that runs. And the rewrite of a run that awaits at its top level (JavaScript or
// TypeScript) into one that can, its declarations kept for the next runs.
function __dsTypeScript() {
  const fs = require('fs');
  const path = require('path');
  let ts = null;

  function load() {
    if (ts === null) ts = require('typescript');
    return ts;
  }

  // The check is TypeScript's against the ES2022 library, the program's own declarations and the types of packages it
  // installs; Node's globals and built-in modules are declared loosely (below) rather than by @types/node, whose
  // hundred files take seconds to load in a sandbox, for every one-shot run.
  function options(t) {
    return {
      target: t.ScriptTarget.ES2022,
      module: t.ModuleKind.CommonJS,
      moduleResolution: t.ModuleResolutionKind.NodeJs,
      esModuleInterop: true,
      allowJs: true,
      skipLibCheck: true,
      noEmit: true,
      lib: ['lib.es2022.d.ts'],
      types: [],
    };
  }

  // Top-level await in a script is fine here (the run is rewritten to allow it), and so is a name a run declares
  // again that an earlier run declared (TypeScript checks each run with the earlier ones as its scope).
  const ALLOWED = new Set([1375, 1378, 1431, 1432, 2792]);

  function format(t, diagnostics, name) {
    return diagnostics
      .filter((d) => d.category === t.DiagnosticCategory.Error && !ALLOWED.has(d.code))
      .map((d) => {
        const text = t.flattenDiagnosticMessageText(d.messageText, '\n');
        if (!d.file || d.start === undefined) return 'error TS' + d.code + ': ' + text;
        const at = d.file.getLineAndCharacterOfPosition(d.start);
        const file = name(d.file.fileName);
        return file + '(' + (at.line + 1) + ',' + (at.character + 1) + '): error TS' + d.code + ': ' + text;
      });
  }

  function transpile(source, fileName) {
    const t = load();
    return t.transpileModule(source, {
      fileName,
      compilerOptions: {
        target: t.ScriptTarget.ES2022,
        module: t.ModuleKind.CommonJS,
        esModuleInterop: true,
        sourceMap: false,
        inlineSourceMap: false,
      },
      reportDiagnostics: false,
    }).outputText;
  }

  // What the sandbox adds to a program's globals, for the type check.
  const GLOBALS = '/durable-sandbox/globals.d.ts';
  const GLOBALS_TEXT = [
    'declare function display(value: unknown, options?: { raw?: boolean }): void;',
    'declare var require: { (id: string): any; resolve(id: string): string; cache: any; main: any };',
    'declare var module: any, exports: any, process: any, Buffer: any, console: any, global: any;',
    'declare var __dirname: string, __filename: string;',
    'declare var URL: any, URLSearchParams: any, TextEncoder: any, TextDecoder: any, AbortController: any;',
    'declare var performance: any, crypto: any, Blob: any, Headers: any, Request: any, Response: any, FormData: any;',
    'declare function fetch(input: any, init?: any): Promise<any>;',
    'declare function setTimeout(handler: (...args: any[]) => void, ms?: number, ...args: any[]): any;',
    'declare function setInterval(handler: (...args: any[]) => void, ms?: number, ...args: any[]): any;',
    'declare function setImmediate(handler: (...args: any[]) => void, ...args: any[]): any;',
    'declare function clearTimeout(id: any): void;',
    'declare function clearInterval(id: any): void;',
    'declare function clearImmediate(id: any): void;',
    'declare function queueMicrotask(callback: () => void): void;',
    'declare function structuredClone<T>(value: T): T;',
    'declare function atob(data: string): string;',
    'declare function btoa(data: string): string;',
    // Any module without types of its own (Node's built-in ones among them) is `any`.
    "declare module '*';",
    '',
  ].join('\n');

  // A program's file: its type errors (of it and of the files it imports), or none.
  function checkProgram(fileName) {
    const t = load();
    const settings = options(t);
    const host = t.createCompilerHost(settings);
    const getSourceFile = host.getSourceFile;
    host.getSourceFile = (f, ...rest) =>
      f === GLOBALS ? t.createSourceFile(f, GLOBALS_TEXT, t.ScriptTarget.ES2022) : getSourceFile.call(host, f, ...rest);
    const fileExists = host.fileExists;
    host.fileExists = (f) => f === GLOBALS || fileExists.call(host, f);
    const program = t.createProgram([fileName, GLOBALS], settings, host);
    const diagnostics = t.getPreEmitDiagnostics(program);
    const cwd = process.cwd();
    return format(t, diagnostics, (f) => {
      const relative = path.relative(cwd, f);
      return relative && !relative.startsWith('..') ? relative : f;
    });
  }

  // A session's runs, each a script of its own whose declarations are in scope for the ones after it.
  function cells() {
    const t = load();
    const files = new Map([[GLOBALS, GLOBALS_TEXT]]);
    const settings = options(t);
    const host = {
      getScriptFileNames: () => Array.from(files.keys()),
      getScriptVersion: (f) => (files.has(f) ? '1' : '0'),
      getScriptSnapshot: (f) => {
        if (files.has(f)) return t.ScriptSnapshot.fromString(files.get(f));
        return fs.existsSync(f) ? t.ScriptSnapshot.fromString(fs.readFileSync(f, 'utf8')) : undefined;
      },
      getCurrentDirectory: () => process.cwd(),
      getCompilationSettings: () => settings,
      getDefaultLibFileName: (o) => t.getDefaultLibFilePath(o),
      fileExists: (f) => files.has(f) || t.sys.fileExists(f),
      readFile: (f) => (files.has(f) ? files.get(f) : t.sys.readFile(f)),
      readDirectory: t.sys.readDirectory,
      directoryExists: t.sys.directoryExists,
      getDirectories: t.sys.getDirectories,
    };
    const service = t.createLanguageService(host, t.createDocumentRegistry());
    return {
      // The run's type errors; a run without any stays in scope for the next.
      check(number, source) {
        const file = '/durable-sandbox/run-' + number + '.ts';
        files.set(file, source);
        const errors = format(
          t,
          service.getSyntacticDiagnostics(file).concat(service.getSemanticDiagnostics(file)),
          () => '<run ' + number + '>',
        );
        if (errors.length > 0) files.delete(file);
        return errors;
      },
    };
  }

  // A run that awaits at its top level, as a script that can: its top-level declarations become the script's own (so
  // the next runs see them), the rest runs in an async function, whose value is the last expression's. Lines stay
  // where they were (what goes before the function is on the first line). Returns null when the run needs none of it.
  function topLevelAwait(source) {
    if (!/\bawait\b/.test(source)) return null;
    const t = load();
    const file = t.createSourceFile('run.js', source, t.ScriptTarget.ES2022, true, t.ScriptKind.JS);
    let awaits = false;
    const visit = (node) => {
      if (awaits) return;
      if (t.isAwaitExpression(node) || (t.isForOfStatement(node) && node.awaitModifier)) {
        awaits = true;
        return;
      }
      if (t.isFunctionLike(node) || t.isClassLike(node)) return;
      t.forEachChild(node, visit);
    };
    file.statements.forEach(visit);
    if (!awaits) return null;
    const hoisted = [];
    const functions = [];
    const names = (binding, into) => {
      if (t.isIdentifier(binding)) into.push(binding.text);
      else binding.elements.forEach((e) => t.isOmittedExpression(e) || names(e.name, into));
    };
    let body = '';
    let last = 0;
    const statements = file.statements;
    statements.forEach((s, i) => {
      const start = s.getStart(file);
      body += source.slice(last, start);
      last = s.getEnd();
      const text = s.getText(file);
      if (t.isVariableStatement(s)) {
        const declared = [];
        const assignments = [];
        for (const d of s.declarationList.declarations) {
          names(d.name, declared);
          if (d.initializer) assignments.push('(' + d.name.getText(file) + ' = ' + d.initializer.getText(file) + ')');
        }
        const isVar = !(s.declarationList.flags & (t.NodeFlags.Let | t.NodeFlags.Const));
        hoisted.push((isVar ? 'var ' : 'let ') + declared.join(', ') + ';');
        body += assignments.length ? 'void (' + assignments.join(', ') + ');' : '';
      } else if (t.isFunctionDeclaration(s) && s.name) {
        // Hoisted in the function as it would be in the script, and made the script's from its start.
        hoisted.push('var ' + s.name.text + ';');
        functions.push('globalThis[' + JSON.stringify(s.name.text) + '] = ' + s.name.text + ';');
        body += text;
      } else if (t.isClassDeclaration(s) && s.name) {
        hoisted.push('let ' + s.name.text + ';');
        body += s.name.text + ' = ' + text + ';';
      } else if (i === statements.length - 1 && t.isExpressionStatement(s)) {
        body += 'return (' + s.expression.getText(file) + ');';
      } else {
        body += text;
      }
    });
    body += source.slice(last);
    return hoisted.join(' ') + ' (async () => {' + functions.join(' ') + body + '\n})()';
  }

  return { transpile, checkProgram, cells, topLevelAwait };
}

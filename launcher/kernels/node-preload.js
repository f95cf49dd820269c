// durable-sandbox: loaded first by a one-shot Node.js program (NODE_OPTIONS=--require): `display` on its display pipe,
// and TypeScript files run as JavaScript after a type check (a type error ends the program with status 1 and the
// errors, each with its file and line). A program that awaits at its top level runs as if it could.
(function preload() {
  const fd = Number(process.env.DS_DISPLAY_FD);
  if (Number.isInteger(fd) && fd > 2) {
    globalThis.display = __dsDisplayInstall(fd, Number(process.env.DS_DISPLAY_CAP) || 0).display;
  }
  delete process.env.DS_DISPLAY_FD;
  delete process.env.DS_DISPLAY_CAP;
  const Module = require('module');
  const ts = __dsTypeScript();
  let checked = false;
  Module._extensions['.ts'] = function compileTypeScript(module, filename) {
    const fs = require('fs');
    const source = fs.readFileSync(filename, 'utf8');
    if (!checked) {
      // The first TypeScript file is the program: it and every file it imports are checked at once.
      checked = true;
      const errors = ts.checkProgram(filename);
      if (errors.length > 0) {
        process.stderr.write(errors.join('\n') + '\n');
        process.exit(1);
      }
    }
    compileAwaiting(module, ts.transpile(source, filename), filename, (code) => module._compile(code, filename));
  };

  // The program itself (a CommonJS module) may await at its top level, as a session's run may.
  const loadJavaScript = Module._extensions['.js'];
  Module._extensions['.js'] = function compileJavaScript(module, filename) {
    if (module.id !== '.') return loadJavaScript(module, filename);
    const source = require('fs').readFileSync(filename, 'utf8');
    return compileAwaiting(module, source, filename, () => loadJavaScript(module, filename));
  };

  function compileAwaiting(module, code, filename, compile) {
    // Only a program that does not compile as it is, and awaits at its top level, is rewritten (before anything ran).
    if (/\bawait\b/.test(code) && !compiles(code)) {
      let awaited = null;
      try {
        awaited = ts.topLevelAwait(code);
      } catch (_err) {
        // no TypeScript module to rewrite it with: Node's own SyntaxError says what is wrong
      }
      if (awaited !== null) return module._compile(awaited, filename);
    }
    return compile(code);
  }

  function compiles(code) {
    try {
      new (require('vm').Script)(Module.wrap(code));
      return true;
    } catch (err) {
      return !(err instanceof SyntaxError);
    }
  }
})();

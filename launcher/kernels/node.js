// durable-sandbox: a JavaScript or TypeScript session's interpreter, as Node's REPL keeps one. Each run is a script in
// one V8 context: its variables, functions, classes and the modules it `require`s stay for the next runs; it may
// `await` at its top level; its last expression's value is shown (printed as the REPL shows it, or as display data
// when it has a display form). TypeScript runs are type-checked with the earlier runs in scope, then transpiled.
// Protocol (the launcher's session.py): runs come on a pipe (8-digit number, 8-digit length, the source); when one
// is done the kernel writes its status on another ("0", "1", "130" interrupted; " unheard" when the run closed or
// redirected the kernel's stdout or stderr). SIGINT interrupts the run, as in a notebook, not the kernel.
(function serve() {
  const fs = require('fs');
  const Module = require('module');
  const path = require('path');
  const util = require('util');
  const vm = require('vm');

  const args = process.argv.slice(process.argv.indexOf('ds-kernel') + 1);
  const [cellsFd, doneFd, displayFd, displayCap] = args.slice(0, 4).map(Number);
  const typescript = args[4] === 'typescript';
  const shown = displayFd >= 0 ? __dsDisplayInstall(displayFd, displayCap) : null;
  const ts = __dsTypeScript();
  const checker = typescript ? ts.cells() : null;

  // What a script of the REPL has: require (from the working directory: its node_modules, then the image's), module,
  // exports, __filename, __dirname, and display.
  const here = path.join(process.cwd(), '<session>');
  const sessionModule = new Module(here, null);
  sessionModule.filename = here;
  sessionModule.paths = Module._nodeModulePaths(process.cwd());
  globalThis.require = Module.createRequire(here);
  globalThis.module = sessionModule;
  globalThis.exports = sessionModule.exports;
  globalThis.__filename = here;
  globalThis.__dirname = process.cwd();
  if (shown) globalThis.display = shown.display;

  // An error a run leaves behind (a timer's, a promise nobody awaited) is reported, never the kernel's end.
  process.on('uncaughtException', (err) => report(err));
  process.on('unhandledRejection', (err) => report(err));

  function report(err) {
    let text;
    if (err && typeof err === 'object' && typeof err.stack === 'string') {
      // The run's own frames only: the kernel's are of no interest to the program's author.
      const lines = err.stack.split('\n');
      const kept = lines.filter((l, i) => i === 0 || !/^\s+at /.test(l) || /<run \d+>/.test(l));
      text = kept.join('\n');
    } else {
      text = 'Uncaught ' + util.inspect(err);
    }
    process.stderr.write(text + '\n');
  }

  // The descriptors the launcher hears the kernel on: a run that closes or redirects them leaves it deaf.
  const pipes = [1, 2].map((fd) => fs.fstatSync(fd).ino);
  function heard() {
    try {
      return [1, 2].every((fd, i) => fs.fstatSync(fd).ino === pipes[i]);
    } catch (_err) {
      return false;
    }
  }

  // SIGINT: while a run's script executes, V8 stops it (breakOnSigint); while the run awaits, its wait is abandoned.
  let interruptWait = null;
  process.on('SIGINT', () => {
    if (interruptWait) interruptWait();
  });

  const INTERRUPTED = Symbol('interrupted');

  // process.exit in a run ends the run with that status, as sys.exit does in a Python session; the kernel stays.
  class ExitRequest {
    constructor(code) {
      this.code = code;
    }
  }
  const exit = process.exit.bind(process);
  let running = false;
  process.exit = function exitRun(code) {
    if (!running) exit(code);
    throw new ExitRequest(Number(code === undefined ? process.exitCode || 0 : code) & 0xff);
  };

  async function run(number, source) {
    let code = source;
    if (typescript) {
      const errors = checker.check(number, source);
      if (errors.length > 0) {
        process.stderr.write(errors.join('\n') + '\n');
        return 1;
      }
      code = ts.transpile(source, 'run-' + number + '.ts');
    }
    let value;
    try {
      let script;
      try {
        script = new vm.Script(code, { filename: '<run ' + number + '>' });
      } catch (err) {
        const rewritten = err instanceof SyntaxError ? ts.topLevelAwait(code) : null;
        if (rewritten === null) throw err;
        script = new vm.Script(rewritten, { filename: '<run ' + number + '>' });
        const pending = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
        value = await new Promise((resolve, reject) => {
          interruptWait = () => reject(INTERRUPTED);
          pending.then(resolve, reject);
        }).finally(() => {
          interruptWait = null;
        });
        script = null;
      }
      if (script) value = script.runInThisContext({ breakOnSigint: true, displayErrors: false });
    } catch (err) {
      if (err instanceof ExitRequest) return err.code;
      if (err === INTERRUPTED || (err && err.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED')) {
        process.stderr.write('Interrupted\n');
        return 130;
      }
      report(err);
      return 1;
    }
    if (value !== undefined) {
      globalThis._ = value;
      if (shown && shown.hasDisplay(value)) shown.display(value);
      else process.stdout.write(util.inspect(value, { colors: false }) + '\n');
    }
    return 0;
  }

  let buffer = Buffer.alloc(0);
  let busy = false;
  const queue = [];
  async function next() {
    if (busy) return;
    busy = true;
    while (queue.length > 0) {
      const [number, source] = queue.shift();
      if (number === 0) {
        // The launcher's requests (checkpoint, restore): this kernel's state is rebuilt by replay instead.
        fs.writeSync(doneFd, 'c {"error":"a Node.js session keeps no state between pods"}\n');
        continue;
      }
      let status;
      running = true;
      try {
        status = await run(number, source);
      } catch (err) {
        report(err);
        status = 1;
      } finally {
        running = false;
      }
      fs.writeSync(doneFd, status + (heard() ? '' : ' unheard') + '\n');
    }
    busy = false;
  }

  // Read on the event loop (a pipe socket), not by a thread of libuv's pool: a read blocked in one of those would
  // hold up the kernel's exit (process.exit waits for the pool) until the next run came.
  const cells = new (require('net').Socket)({ fd: cellsFd, readable: true, writable: false });
  cells.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    while (buffer.length >= 16) {
      const number = Number(buffer.subarray(0, 8).toString('ascii'));
      const length = Number(buffer.subarray(8, 16).toString('ascii'));
      if (buffer.length < 16 + length) break;
      queue.push([number, buffer.subarray(16, 16 + length).toString('utf8')]);
      buffer = buffer.subarray(16 + length);
    }
    next();
  });
  // The launcher closed the runs' pipe: the session is over.
  cells.on('end', () => process.exit(0));
})();

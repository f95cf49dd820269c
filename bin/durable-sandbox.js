#!/usr/bin/env node
// The durable-sandbox CLI (cli/main.ts): the compiled one when `npm run build` made it, else straight from the sources.
const path = require('node:path');
const fs = require('node:fs');
const compiled = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
let main;
if (fs.existsSync(compiled)) {
  main = require(compiled).main;
} else {
  require('ts-node').register({ transpileOnly: true, project: path.join(__dirname, '..', 'tsconfig.json') });
  main = require(path.join(__dirname, '..', 'cli', 'main.ts')).main;
}
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`durable-sandbox: ${err && err.stack ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);

// durable-sandbox: display data from a Node.js program (its one-shot preload and the session kernel), framed on a
// pipe of the launcher's as kernels/display.py frames Python's: a 16-digit length and a JSON MIME bundle.
//
// display(value) sends the value's bundle: an object's [Symbol.for("Jupyter.display")]() (Deno's convention) gives
// its types; a string is text; any other value its util.inspect text, with JSON for plain data.
// display(bundle, { raw: true }) sends a bundle as it is ({ "image/png": Buffer or base64, "text/html": ... }).
function __dsDisplayInstall(fd, maxBytes) {
  const fs = require('fs');
  const util = require('util');
  const DISPLAY = Symbol.for('Jupyter.display');

  function hasDisplay(value) {
    return (
      value !== null &&
      (typeof value === 'object' || typeof value === 'function') &&
      typeof value[DISPLAY] === 'function'
    );
  }

  function plainData(value) {
    if (Array.isArray(value)) return true;
    if (value === null || typeof value !== 'object') return false;
    const proto = Object.getPrototypeOf(value);
    return proto === Object.prototype || proto === null;
  }

  function bundleOf(value, raw) {
    let data = {};
    if (raw && value !== null && typeof value === 'object') {
      data = Object.assign({}, value);
    } else if (hasDisplay(value)) {
      try {
        data = Object.assign({}, value[DISPLAY]());
      } catch (err) {
        data = { 'text/plain': '<display failed: ' + String((err && err.message) || err) + '>' };
      }
    } else if (typeof value === 'string') {
      data = { 'text/plain': value };
    } else if (plainData(value)) {
      try {
        const json = JSON.stringify(value);
        if (typeof json === 'string') data['application/json'] = json;
      } catch (_err) {
        // not JSON: its text alone
      }
    }
    const out = {};
    for (const [mime, v] of Object.entries(data)) {
      if (typeof v === 'string') out[mime] = v;
      else if (v instanceof Uint8Array)
        out[mime] = Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
      else if (/json$/.test(mime) && v !== undefined) {
        try {
          out[mime] = JSON.stringify(v);
        } catch (_err) {
          // dropped
        }
      }
    }
    if (typeof out['text/plain'] !== 'string') out['text/plain'] = util.inspect(value);
    return out;
  }

  function send(data) {
    let payload = Buffer.from(JSON.stringify(data), 'utf8');
    if (payload.length > maxBytes) {
      // Too large whole: its text form alone, and said so.
      const text = String(data['text/plain'] || '').slice(0, Math.floor(maxBytes / 2));
      payload = Buffer.from(JSON.stringify({ 'text/plain': text, 'durable-sandbox/truncated': 'true' }), 'utf8');
    }
    let message = Buffer.concat([Buffer.from(String(payload.length).padStart(16, '0'), 'ascii'), payload]);
    try {
      while (message.length > 0) message = message.subarray(fs.writeSync(fd, message));
    } catch (_err) {
      // the launcher stopped reading: the display is lost, the program goes on
    }
  }

  function display(value, options) {
    send(bundleOf(value, Boolean(options && options.raw)));
  }

  return { display, hasDisplay };
}

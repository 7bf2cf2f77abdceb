'use strict';
// ddb2os test-only preload: `node --require tests/servers/loopback.js SERVER.js ...`
//
// Forces every TCP server the process opens to listen on 127.0.0.1 only. scripts/services uses it for
// kinesis-mock (npm kinesis-local), which binds all interfaces and has no host option. http, https,
// http2 and tls servers all inherit net.Server.prototype.listen, so patching that one method covers them.
// Unix-socket paths, inherited handles and file descriptors pass through untouched.
// Each rewritten call is logged to stderr, so the server's log shows where it really listens.

const net = require('net');

const HOST = '127.0.0.1';
const originalListen = net.Server.prototype.listen;

function isPortLike(v) {
  return v === undefined || v === null || typeof v === 'number' ||
    (typeof v === 'string' && /^[0-9]+$/.test(v));
}

net.Server.prototype.listen = function loopbackListen(...args) {
  const first = args[0];

  // listen(options[, callback])
  if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
    const isHandle = typeof first._handle === 'object' || typeof first.fd === 'number' ||
      (first.handle !== undefined && first.handle !== null) || typeof first.path === 'string';
    if (isHandle) {
      return originalListen.apply(this, args);
    }
    if (first.host !== undefined && first.host !== HOST) {
      process.stderr.write(`loopback.js: host ${first.host} replaced by ${HOST}\n`);
    }
    args[0] = Object.assign({}, first, { host: HOST, ipv6Only: false });
    process.stderr.write(`loopback.js: listen ${HOST}:${first.port === undefined ? 0 : first.port}\n`);
    return originalListen.apply(this, args);
  }

  // listen([port][, host][, backlog][, callback]); a non-numeric string first argument is a pipe path.
  if (typeof first === 'function' || isPortLike(first)) {
    const rest = typeof first === 'function' ? args : args.slice(1);
    const opts = { port: typeof first === 'function' || first === null || first === undefined ? 0 : Number(first),
      host: HOST };
    let callback;
    for (const a of rest) {
      if (typeof a === 'function') {
        callback = a;
      } else if (typeof a === 'number') {
        opts.backlog = a;
      } else if (typeof a === 'string' && a !== HOST) {
        process.stderr.write(`loopback.js: host ${a} replaced by ${HOST}\n`);
      }
    }
    process.stderr.write(`loopback.js: listen ${HOST}:${opts.port}\n`);
    return callback ? originalListen.call(this, opts, callback) : originalListen.call(this, opts);
  }

  return originalListen.apply(this, args);
};

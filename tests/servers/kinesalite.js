'use strict';
// ddb2os test-only Kinesis emulator: kinesalite (pinned in package.json), in memory, on 127.0.0.1.
// usage: node tests/servers/kinesalite.js PORT        (scripts/services passes D2O_KLITE_PORT, default 4570)
//
// Started from code rather than kinesalite's CLI because the CLI binds every interface. Stream state
// changes are immediate (0 ms) so tests never wait for CREATING/UPDATING/DELETING, and the shard limit is
// raised from 10 to 1000 so split/merge tests have room and one
// stream can hold the 200 shards a worker is benchmarked with (bench/pool_bench.py shards). Exits 1 if the port cannot be bound.

const path = require('path');
const kinesalite = require(path.join(__dirname, 'node_modules', 'kinesalite'));

const port = Number(process.argv[2] || process.env.D2O_KLITE_PORT || 4570);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write(`kinesalite.js: bad port ${process.argv[2]}\n`);
  process.exit(2);
}

const server = kinesalite({ createStreamMs: 0, updateStreamMs: 0, deleteStreamMs: 0, shardLimit: 1000 });
server.on('error', (err) => {
  process.stderr.write(`kinesalite.js: ${err.message}\n`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`kinesalite.js: listening on http://127.0.0.1:${port}\n`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

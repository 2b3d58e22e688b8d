// Fluent's own Forward protocol client and server (@fluent-org/logger), driven by oomtrace's tests.
//   node peer.js client PORT TAG COUNT MODE [--key K] [--ca FILE]   → prints "acked COUNT"
//   node peer.js server [--key K] [--cert FILE --tls-key FILE]      → prints "port P", then one JSON line per entry
"use strict";
const fs = require("fs");
const { FluentClient, FluentServer } = require("@fluent-org/logger");

function flag(args, name) {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function client(args) {
  const [port, tag, count, mode] = args;
  const key = flag(args, "--key");
  const ca = flag(args, "--ca");
  const c = new FluentClient(tag, {
    eventMode: mode,
    socket: { host: "127.0.0.1", port: Number(port), tls: ca ? { ca: fs.readFileSync(ca), servername: "localhost" } : undefined },
    security: key ? { clientHostname: "node-peer", sharedKey: key } : undefined,
    ack: { ackTimeout: 10000 },
  });
  const sends = [];
  for (let i = 0; i < Number(count); i++) {
    sends.push(c.emit("test", { type: "peer", seq: i, text: "from @fluent-org/logger" }));
  }
  await Promise.all(sends);
  console.log(`acked ${count}`);
  await c.disconnect();
}

async function server(args) {
  const key = flag(args, "--key");
  const cert = flag(args, "--cert");
  const s = new FluentServer({
    security: key ? { serverHostname: "node-server", sharedKey: key, authorize: false, userDict: {} } : undefined,
    tlsOptions: cert ? { cert: fs.readFileSync(cert), key: fs.readFileSync(flag(args, "--tls-key")) } : undefined,
    listenOptions: { port: 0, host: "127.0.0.1" },
  });
  s.on("entry", (tag, time, record) => {
    console.log(JSON.stringify({ tag, time: Number(time.epoch !== undefined ? time.epoch + time.nano / 1e9 : time), record }));
  });
  await s.listen();
  console.log(`port ${s.port}`);
}

const [mode, ...rest] = process.argv.slice(2);
(mode === "client" ? client(rest) : server(rest)).catch((e) => {
  console.error(`peer failed: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});

/**
 * A bare uWebSockets.js server speaking just enough of `/v1/ingest` for a driver client: a
 * `welcome` frame after the upgrade, then one MessagePack `ack` per frame. No validation, no
 * Redis: what a client costs per frame on this machine, without the gateway's own work
 * (load-tests/client-cost.ts). Prints {"msg":"ack listening","port":N} once listening.
 */
import { Packr } from 'msgpackr';
import { loadUws } from '../../src/gateway/uws.js';

const packr = new Packr({ useRecords: false });
const { uws } = loadUws();
const app = uws.App();
app.ws<{ frames: number }>('/*', {
  maxPayloadLength: 64 * 1024,
  idleTimeout: 120,
  upgrade: (res, req, context) => {
    res.upgrade({ frames: 0 }, req.getHeader('sec-websocket-key'), req.getHeader('sec-websocket-protocol'), req.getHeader('sec-websocket-extensions'), context);
  },
  open: (ws) => {
    // Next turn, as the gateway does (src/gateway/ingest-socket.ts).
    setImmediate(() => ws.send(packr.pack({ type: 'welcome', tenant: 'bench', sub: 'x', maxBatch: 500, maxPayloadBytes: 65536 }), true));
  },
  message: (ws, msg) => {
    const d = ws.getUserData();
    const ping = packr.unpack(Buffer.from(msg)) as { seq?: number };
    ws.send(packr.pack({ type: 'ack', seq: ping.seq ?? null, count: 1, frame: ++d.frames }), true);
  },
});
app.listen('127.0.0.1', 0, (ls) => {
  if (!ls) { process.stderr.write('ack server could not listen\n'); process.exit(1); }
  process.stdout.write(JSON.stringify({ msg: 'ack listening', port: uws.us_socket_local_port(ls) }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));

/**
 * A bare uWebSockets.js server speaking just enough of `/v1/ingest` for a driver client: a
 * `welcome` frame after the upgrade, then one MessagePack `ack` per frame. No validation, no
 * Redis: what a client costs per frame on this machine, without the gateway's own work
 * (load-tests/client-cost.ts). Prints {"msg":"ack listening","port":N} once listening.
 * ACK_STALL_MS=n: the first frame blocks the event loop n ms (a start-up stall: the frames behind
 * it queue and are answered in a burst), for the warm-up test (test/integration/bench-warmup.test.ts).
 */
import { Packr } from 'msgpackr';
import { loadUws } from '../../src/gateway/uws.js';

const packr = new Packr({ useRecords: false });
let stallMs = Number(process.env.ACK_STALL_MS ?? 0);
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
    if (stallMs > 0) { const until = Date.now() + stallMs; stallMs = 0; while (Date.now() < until) { /* stalled */ } }
    const d = ws.getUserData();
    const frame = packr.unpack(Buffer.from(msg)) as { seq?: number } | unknown[];
    // As the gateway: count = the frame's pings (an array is a batch or a fleet feed's frame).
    const ack = Array.isArray(frame) ? { seq: null, count: frame.length } : { seq: frame.seq ?? null, count: 1 };
    ws.send(packr.pack({ type: 'ack', ...ack, frame: ++d.frames }), true);
  },
});
app.listen('127.0.0.1', 0, (ls) => {
  if (!ls) { process.stderr.write('ack server could not listen\n'); process.exit(1); }
  process.stdout.write(JSON.stringify({ msg: 'ack listening', port: uws.us_socket_local_port(ls) }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));

/**
 * A bare socket.io server on uWS (as the gateway attaches it) that sends room frames and nothing
 * else: every `--interval-ms` one `update` event with `--entities` positional entities
 * (MessagePack, as src/rooms/io-server.ts packs them) to every connected client. The packet
 * format is `--parser msgpack` (the rooms' socket.io-msgpack-parser) or `default` (socket.io's
 * own: a text header plus a binary attachment). No Redis, no auth: what a map client costs per
 * frame, without the gateway's own work (load-tests/map-client-cost.ts). A `subscribe` is
 * acknowledged and changes nothing.
 * Prints {"msg":"room server listening","port":N} once listening.
 */
import { parseArgs } from 'node:util';
import { Server } from 'socket.io';
import { Packr } from 'msgpackr';
import { loadUws } from '../../src/gateway/uws.js';
import { packEntity, SOCKET_PATH } from '../../src/protocol/rooms.js';
import { roomsParser } from '../../src/protocol/rooms-parser.js';

const { values } = parseArgs({ options: { parser: { type: 'string', default: 'msgpack' }, entities: { type: 'string', default: '12' }, 'interval-ms': { type: 'string', default: '25' } } });
const entities = Number(values.entities);
const intervalMs = Number(values['interval-ms']);
const packr = new Packr({ useRecords: false });
const { uws } = loadUws();
const app = uws.App();
const io = new Server({ path: SOCKET_PATH, transports: ['websocket'], ...(values.parser === 'msgpack' ? { parser: roomsParser } : {}) });
io.attachApp(app);
// Frames go to every client; a `subscribe` is only acknowledged (lib/sink-viewer.ts waits for one).
io.on('connection', (socket) => socket.on('subscribe', (req: { tiles: string[] }, ack: (r: unknown) => void) => ack({ ok: true, tiles: req.tiles })));
const tile = '14/7823/6170';
let n = 0;
setInterval(() => {
  const ts = Date.now();
  const list = Array.from({ length: entities }, (_, i) => packEntity({ id: `porto-car-${String(i).padStart(4, '0')}`, lat: 41.15 + (n % 100) * 1e-5, lon: -8.61 + i * 1e-4, ts, speed: 8.5, status: 'on_trip' }));
  n++;
  io.emit('update', tile, packr.pack(list));
}, intervalMs);
app.listen('127.0.0.1', 0, (ls) => {
  if (!ls) { process.stderr.write('room server could not listen\n'); process.exit(1); }
  process.stdout.write(JSON.stringify({ msg: 'room server listening', port: uws.us_socket_local_port(ls) }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));

/**
 * The k6 helper module (load-tests/k6/lib/geoflux.js) run under Node with tiny shims for
 * `k6/crypto` and `k6/encoding`: tokens it mints pass the gateway's verifier, its tile math
 * matches src/geo/tiles, and its Engine.IO/Socket.IO text framing talks to a real socket.io
 * server (connect with auth, event with ack id, ack, server event, ping/pong).
 */
import { test, after } from 'node:test';
import { packEntity, unpackEntity, type PackedEntity } from '../../src/protocol/rooms.js';
import assert from 'node:assert/strict';
import { register } from 'node:module';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Server } from 'socket.io';
import WebSocket from 'ws';
import { Encoder, PacketType } from 'socket.io-parser';
import { projectRoot } from '../../src/config/load.js';
import { createHmacVerifier } from '../../src/auth/tokens.js';
import { tileKey, tileOf } from '../../src/geo/tiles.js';

const SECRET = 'k6-lib-test-secret-0123456789abcdef';

const shims: Record<string, string> = {
  'k6/crypto': `import { createHmac } from 'node:crypto';
    const enc = { base64rawurl: 'base64url', base64url: 'base64url', base64: 'base64', hex: 'hex' };
    export function hmac(alg, secret, data, out) { return createHmac(alg, secret).update(data).digest(enc[out]); }
    export default { hmac };`,
  'k6/encoding': `export function b64encode(input, variant) {
      const b = Buffer.from(input);
      return variant === 'rawurl' ? b.toString('base64url') : variant === 'url' ? b.toString('base64url') + '='.repeat((4 - (b.toString('base64url').length % 4)) % 4) : b.toString('base64');
    }
    export default { b64encode };`,
};
const hooks = `const shims = ${JSON.stringify(shims)};
export async function resolve(spec, ctx, next) {
  if (Object.prototype.hasOwnProperty.call(shims, spec)) return { url: 'data:text/javascript,' + encodeURIComponent(shims[spec]), shortCircuit: true };
  return next(spec, ctx);
}`;
register('data:text/javascript,' + encodeURIComponent(hooks));
const g = globalThis as unknown as { __ENV: Record<string, string>; open: (p: string) => string };
g.__ENV = { JWT_SECRET: SECRET, TENANT: 'acme', HOST: '127.0.0.1:1' };
g.open = () => '';

interface Frame { eio: string; sio?: string; ackId?: number; data?: unknown }
interface K6Lib {
  mintToken(sub: string, scope: string, ttl?: number): string;
  driverId(n: number): string;
  tileOf(lon: number, lat: number, z: number): { z: number; x: number; y: number };
  viewportTiles(lat: number, lon: number, z: number, w: number, h: number): string[];
  parseFrame(text: string): Frame;
  sioConnectFrame(auth: unknown): string;
  sioEventFrame(name: string, args: unknown[], ackId?: number): string;
  decodeMsgpack(buf: Uint8Array | ArrayBuffer): unknown;
  unpackEntity(a: unknown): unknown;
  SIO_PATH: string;
  newVehicle(id: string): unknown;
  nextPing(v: unknown, dtMs: number): { id: string; lat: number; lon: number; ts: number; seq: number; speed: number; heading: number };
}
const lib = (await import(pathToFileURL(join(projectRoot(), 'load-tests/k6/lib/geoflux.js')).href)) as K6Lib;

test('tokens minted by the k6 scripts pass the gateway verifier', async () => {
  const v = createHmacVerifier(SECRET, 'geoflux');
  const p = await v.verify(lib.mintToken(lib.driverId(7), 'ingest'));
  assert.equal(p.sub, 'k6-drv-7');
  assert.equal(p.tenant, 'acme');
  assert.deepEqual([...p.scopes], ['ingest']);
  await assert.rejects(createHmacVerifier('another-secret-0123456789abcdefgh', 'geoflux').verify(lib.mintToken('x', 'ingest')));
});

test('tile math matches src/geo/tiles', () => {
  for (let i = 0; i < 500; i++) {
    const lat = (Math.random() - 0.5) * 160;
    const lon = (Math.random() - 0.5) * 359.9;
    const z = 1 + Math.floor(Math.random() * 18);
    const t = lib.tileOf(lon, lat, z);
    assert.equal(`${t.z}/${t.x}/${t.y}`, tileKey(tileOf(lon, lat, z)));
  }
  assert.equal(lib.viewportTiles(38.72, -9.14, 14, 2, 2).length, 4);
});

test('pings along a path are valid and plausible', () => {
  const v = lib.newVehicle('k6-drv-1');
  let prev = lib.nextPing(v, 1000);
  for (let i = 0; i < 100; i++) {
    const p = lib.nextPing(v, 1000);
    assert.equal(p.seq, prev.seq + 1);
    assert.ok(Math.abs(p.lat) <= 85 && Math.abs(p.lon) <= 180 && p.heading >= 0 && p.heading <= 360);
    const dist = Math.hypot((p.lat - prev.lat) * 111_320, (p.lon - prev.lon) * 111_320 * Math.cos((p.lat * Math.PI) / 180));
    assert.ok(dist < 30, `jumped ${dist} m in 1 s`);
    prev = p;
  }
});

test('parseFrame decodes what socket.io-parser encodes', () => {
  const enc = new Encoder();
  const one = (pkt: Parameters<Encoder['encode']>[0]): string => `4${enc.encode(pkt)[0] as string}`;
  assert.deepEqual(lib.parseFrame(one({ type: PacketType.EVENT, nsp: '/', data: ['update', '14/1/2', [{ id: 'a', ts: 1 }]] })),
    { eio: 'message', sio: 'event', ackId: undefined, data: ['update', '14/1/2', [{ id: 'a', ts: 1 }]] });
  assert.deepEqual(lib.parseFrame(one({ type: PacketType.ACK, nsp: '/', id: 12, data: [{ ok: true, tiles: [] }] })),
    { eio: 'message', sio: 'ack', ackId: 12, data: [{ ok: true, tiles: [] }] });
  assert.deepEqual(lib.parseFrame(one({ type: PacketType.CONNECT_ERROR, nsp: '/', data: { message: 'no', data: { code: 'UNAUTHORIZED' } } })),
    { eio: 'message', sio: 'connect_error', ackId: undefined, data: { message: 'no', data: { code: 'UNAUTHORIZED' } } });
  const bin = enc.encode({ type: PacketType.EVENT, nsp: '/', data: ['update', '14/1/2', Buffer.from([1, 2])] });
  assert.equal(lib.parseFrame(`4${bin[0] as string}`).sio, 'binary_event');
  assert.equal(lib.parseFrame('2').eio, 'ping');
  assert.equal(lib.parseFrame('0{"sid":"x","pingInterval":25000}').eio, 'open');
});

test('the k6 framing talks to a real socket.io server: auth, subscribe with ack, events, ping/pong', async () => {
  const http = createServer();
  const io = new Server(http, { transports: ['websocket'], pingInterval: 300, pingTimeout: 2000 });
  after(() => { io.close(); http.close(); });
  io.use((socket, next) => {
    const auth = socket.handshake.auth as { token?: string; format?: string };
    if (auth.token !== 'good') return next(Object.assign(new Error('bad token'), { data: { code: 'UNAUTHORIZED' } }));
    socket.data.format = auth.format;
    next();
  });
  io.on('connection', (socket) => {
    socket.on('subscribe', (req: { tiles: string[] }, ack: (r: unknown) => void) => {
      ack({ ok: true, tiles: req.tiles, format: socket.data.format });
      socket.emit('update', req.tiles[0], [{ id: 'car-1', lat: 1, lon: 2, ts: 123 }]);
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  const port = (http.address() as { port: number }).port;

  const talk = (token: string): Promise<Frame[]> => new Promise((resolve, reject) => {
    const seen: Frame[] = [];
    const ws = new WebSocket(`ws://127.0.0.1:${port}${lib.SIO_PATH}`);
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`timeout; seen ${JSON.stringify(seen)}`)); }, 5000);
    let pings = 0;
    ws.on('message', (raw) => {
      const f = lib.parseFrame(raw.toString());
      seen.push(f);
      if (f.eio === 'open') ws.send(lib.sioConnectFrame({ token, format: 'json' }));
      else if (f.eio === 'ping') { pings++; ws.send('3'); }
      else if (f.sio === 'connect') ws.send(lib.sioEventFrame('subscribe', [{ tiles: ['14/7823/6170'] }], 1));
      else if (f.sio === 'connect_error') { clearTimeout(timer); ws.close(); resolve(seen); }
      // Done once the event arrived and the server pinged twice (we answered the first pong in time).
      if (seen.some((x) => x.sio === 'event') && pings >= 2) { clearTimeout(timer); ws.close(); resolve(seen); }
    });
    ws.on('error', reject);
  });

  const ok = await talk('good');
  const ack = ok.find((f) => f.sio === 'ack');
  assert.deepEqual(ack, { eio: 'message', sio: 'ack', ackId: 1, data: [{ ok: true, tiles: ['14/7823/6170'], format: 'json' }] });
  assert.deepEqual(ok.find((f) => f.sio === 'event')?.data, ['update', '14/7823/6170', [{ id: 'car-1', lat: 1, lon: 2, ts: 123 }]]);

  const refused = await talk('bad');
  assert.deepEqual(refused.at(-1), { eio: 'message', sio: 'connect_error', ackId: undefined, data: { message: 'bad token', data: { code: 'UNAUTHORIZED' } } });
});

test('decodeMsgpack reads what the gateway packs (msgpackr), and a socket.io binary event', async () => {
  const { Packr } = await import('msgpackr');
  const packr = new Packr({ useRecords: false });
  const samples: unknown[] = [
    [{ id: 'porto-car-0001', lat: 41.1496123, lon: -8.611, ts: 1795307507110, speed: 8.5, heading: 270, kind: 'car', status: 'on_trip' }],
    { a: 0, b: -1, c: -33, d: 127, e: 128, f: 255, g: 65535, h: 65536, i: 4294967295, j: 4294967296, k: -129, l: -40000, m: -3000000000, n: 2 ** 53 - 1 },
    { s: 'x'.repeat(40), t: 'é€😀 ünïcødé', u: 'y'.repeat(300), v: 'z'.repeat(70000), w: null, x: true, y: false, z: 1.5e-7 },
    Array.from({ length: 20 }, (_, i) => ({ id: `v${i}`, n: i })),
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, [i, { deep: [i] }]])),
    [{ reason: 'moved', id: 'car-7', ts: 1795307507110 }],
  ];
  for (const v of samples) assert.deepEqual(lib.decodeMsgpack(packr.pack(v)), v);
  const decodedBin = lib.decodeMsgpack(packr.pack({ b: Buffer.from([1, 2, 3]) })) as { b: Uint8Array };
  assert.deepEqual(Array.from(decodedBin.b), [1, 2, 3]);
  assert.throws(() => lib.decodeMsgpack(new Uint8Array([0x92, 0x01])), /truncated/);

  // A room update as socket.io sends it: text frame with a placeholder, then the attachment
  // holding positional entities (packEntity), which the script turns back into objects.
  const updates = [{ id: 'car-7', lat: 41.15, lon: -8.61, ts: 1795307507110 }, { id: 'bus-1', lat: 41.1, lon: -8.6, ts: 1795307507111, speed: 0, heading: 90, kind: 'bus', status: 'on_trip' }];
  const payload = packr.pack(updates.map(packEntity));
  const [text, attachment] = new Encoder().encode({ type: PacketType.EVENT, nsp: '/', data: ['update', '13/3900/3066', payload] }) as [string, Buffer];
  const f = lib.parseFrame(`4${text}`);
  assert.equal(f.sio, 'binary_event');
  assert.equal((f.data as unknown[])[0], 'update');
  const decoded = lib.decodeMsgpack(attachment) as unknown[];
  assert.deepEqual(decoded.map((a) => lib.unpackEntity(a)), updates);
  assert.deepEqual(decoded.map((a) => unpackEntity(a as PackedEntity)), updates);
});

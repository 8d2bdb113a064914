/**
 * The k6 helper module (load-tests/k6/lib/geoflux.js) run under Node with tiny shims for
 * `k6/crypto` and `k6/encoding`: tokens it mints pass the gateway's verifier, its tile math
 * matches src/geo/tiles, its MessagePack encoder/decoder agree with msgpackr and notepack.io, and
 * its Engine.IO framing + socket.io-msgpack-parser packets talk to a real socket.io server using
 * that parser (connect with auth, refused connect, event with ack id, ack, room event, ping/pong).
 */
import { test, after } from 'node:test';
import { packEntity, unpackEntity, type PackedEntity } from '../../src/protocol/rooms.js';
import assert from 'node:assert/strict';
import { createRequire, register } from 'node:module';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Server } from 'socket.io';
import WebSocket from 'ws';
import msgpackParser from 'socket.io-msgpack-parser';
import { Unpackr } from 'msgpackr';
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

interface Frame { eio: string; data?: unknown }
interface Packet { sio: string; ackId?: number; data?: unknown }
interface K6Lib {
  mintToken(sub: string, scope: string, ttl?: number): string;
  driverId(n: number): string;
  tileOf(lon: number, lat: number, z: number): { z: number; x: number; y: number };
  viewportTiles(lat: number, lon: number, z: number, w: number, h: number): string[];
  parseFrame(text: string): Frame;
  parsePacket(buf: Uint8Array | ArrayBuffer): Packet;
  sioConnectPacket(auth?: unknown): ArrayBuffer;
  sioEventPacket(name: string, args: unknown[], ackId?: number): ArrayBuffer;
  encodeMsgpack(value: unknown): ArrayBuffer;
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

/** notepack.io as socket.io-msgpack-parser loads it (its own pinned copy), i.e. what the gateway decodes with. */
const notepack = createRequire(createRequire(import.meta.url).resolve('socket.io-msgpack-parser'))('notepack.io') as { encode(v: unknown): Buffer; decode(b: Buffer): unknown };
/** msgpackr, reading 64-bit integers as numbers (its default is BigInt). */
const unpackr = new Unpackr({ useRecords: false, int64AsType: 'number' });

/** One packet through socket.io-msgpack-parser's Decoder, as the gateway reads it (validated). */
function parserDecode(buf: ArrayBuffer): Record<string, unknown> {
  const d = new msgpackParser.Decoder();
  let out: Record<string, unknown> | undefined;
  d.on('decoded', (p: Record<string, unknown>) => { out = p; });
  d.add(Buffer.from(buf));
  assert.ok(out, 'no packet decoded');
  return out;
}

/** One packet as socket.io-msgpack-parser's Encoder writes it (a single Buffer). */
function parserEncode(packet: Record<string, unknown>): Buffer {
  const parts = new msgpackParser.Encoder().encode(packet) as unknown as Buffer[];
  assert.equal(parts.length, 1);
  return parts[0]!;
}

/** Bin values (Buffer, Uint8Array, ArrayBuffer) as plain byte lists, so decoders can be compared. */
function norm(v: unknown): unknown {
  if (v instanceof ArrayBuffer) return { bin: Array.from(new Uint8Array(v)) };
  if (ArrayBuffer.isView(v)) return { bin: Array.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) };
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}

test('encodeMsgpack round-trips through msgpackr and notepack.io', () => {
  const samples: unknown[] = [
    null, true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER,
    -1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649, -(2 ** 40) - 5, -Number.MAX_SAFE_INTEGER,
    1.5, -0.25, 1.5e-7, 41.1496123, -8.611, Math.PI, 2 ** 60, -0, Infinity, -Infinity, NaN,
    '', 'a', 'x'.repeat(31), 'x'.repeat(32), 'y'.repeat(255), 'y'.repeat(256), 'z'.repeat(70000),
    'é€😀 ünïcødé', '😀'.repeat(20), 'ä'.repeat(16), '𝄞 日本語 עברית 👩‍👩‍👧', '\u0000\u007f\u0080\u07ff\u0800\uffff',
    [], [1, 'a', null, [2, [3, { x: [] }]]], Array.from({ length: 16 }, (_, i) => i), Array.from({ length: 70000 }, (_, i) => i % 300),
    {}, { a: 1, b: 'two', c: [3], d: { e: { f: null } } },
    Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, [i, { deep: [i, -i * 1e6, `ü${i}`] }]])),
    Object.fromEntries(Array.from({ length: 70000 }, (_, i) => [`k${i}`, i])),
    { token: 'eyJhbGciOiJIUzI1NiJ9.x.y', tiles: ['14/7823/6170', '14/7824/6170'], ts: 1795307507110, n: -1795307507110 },
    new Uint8Array([1, 2, 3]), new Uint8Array(300).map((_, i) => i), new Uint8Array(70000).fill(7), new Uint8Array(0),
    { b: new Uint8Array([0, 255]), nested: [new Uint8Array([9])] },
  ];
  for (const v of samples) {
    const buf = lib.encodeMsgpack(v);
    assert.ok(buf instanceof ArrayBuffer);
    const label = JSON.stringify(v)?.slice(0, 60);
    assert.deepEqual(norm(unpackr.unpack(Buffer.from(buf))), norm(v), `msgpackr: ${label}`);
    assert.deepEqual(norm(notepack.decode(Buffer.from(buf))), norm(v), `notepack.io: ${label}`);
    assert.deepEqual(norm(lib.decodeMsgpack(buf)), norm(v), `decodeMsgpack: ${label}`);
  }
  // Other byte containers are bin too; undefined is nil, except as an object value (left out).
  assert.deepEqual(norm(unpackr.unpack(Buffer.from(lib.encodeMsgpack([new Uint8Array([5, 6, 7]).buffer, Buffer.from([8]), new Uint8Array([0, 1, 2, 3]).subarray(1, 3)])))),
    [{ bin: [5, 6, 7] }, { bin: [8] }, { bin: [1, 2] }]);
  assert.deepEqual(notepack.decode(Buffer.from(lib.encodeMsgpack([undefined, { a: undefined, b: 1 }]))), [null, { b: 1 }]);
  // Lone surrogates become U+FFFD, as in TextEncoder / Buffer.from.
  assert.deepEqual(Buffer.from(lib.encodeMsgpack('a\ud800b\udc00')), Buffer.concat([Buffer.from([0xa8]), Buffer.from('a\ud800b\udc00')]));
  assert.equal(notepack.decode(Buffer.from(lib.encodeMsgpack('a\ud800b'))), 'a\ufffdb');
  // Smallest forms, as notepack.io writes them.
  // (notepack.io 2.x writes only a Buffer as bin; other byte containers as its ext type 0.)
  for (const v of [0, 127, 128, 65536, 2 ** 32, -32, -33, -40000, -(2 ** 33), 1.5, 'x'.repeat(40), [1, 2], { a: 1 }, Array.from({ length: 20 }, () => 0), Buffer.alloc(300, 1)]) {
    assert.deepEqual(Buffer.from(lib.encodeMsgpack(v)), notepack.encode(v), JSON.stringify(v)?.slice(0, 40));
  }
  assert.throws(() => lib.encodeMsgpack(() => 1), /cannot encode/);
});

test('packet builders write what socket.io-msgpack-parser accepts; parsePacket reads what it writes', () => {
  assert.deepEqual(parserDecode(lib.sioConnectPacket({ token: 'tok' })), { type: 0, nsp: '/', data: { token: 'tok' } });
  assert.deepEqual(parserDecode(lib.sioConnectPacket()), { type: 0, nsp: '/' });
  assert.deepEqual(parserDecode(lib.sioEventPacket('subscribe', [{ tiles: ['14/1/2'] }], 7)), { type: 2, nsp: '/', data: ['subscribe', { tiles: ['14/1/2'] }], id: 7 });
  const noAck = parserDecode(lib.sioEventPacket('unsubscribe', [{ tiles: [] }]));
  assert.deepEqual(noAck, { type: 2, nsp: '/', data: ['unsubscribe', { tiles: [] }] });
  assert.ok(!('id' in noAck), 'no id key without an ack id');

  assert.deepEqual(lib.parsePacket(parserEncode({ type: 0, nsp: '/', data: { sid: 'abc' } })), { sio: 'connect', ackId: undefined, data: { sid: 'abc' } });
  assert.deepEqual(lib.parsePacket(parserEncode({ type: 3, nsp: '/', id: 12, data: [{ ok: true, tiles: [] }] })), { sio: 'ack', ackId: 12, data: [{ ok: true, tiles: [] }] });
  assert.deepEqual(lib.parsePacket(parserEncode({ type: 4, nsp: '/', data: { message: 'no', data: { code: 'UNAUTHORIZED' } } })),
    { sio: 'connect_error', ackId: undefined, data: { message: 'no', data: { code: 'UNAUTHORIZED' } } });
  assert.deepEqual(lib.parsePacket(parserEncode({ type: 1, nsp: '/' })), { sio: 'disconnect', ackId: undefined, data: undefined });
  const ev = lib.parsePacket(new Uint8Array(parserEncode({ type: 2, nsp: '/', data: ['update', '14/1/2', Buffer.from([0x91, 0x01])] })));
  assert.equal(ev.sio, 'event');
  assert.deepEqual(norm(ev.data), ['update', '14/1/2', { bin: [0x91, 0x01] }]);
  assert.deepEqual(lib.decodeMsgpack((ev.data as Uint8Array[])[2]!), [1]);
  assert.equal(lib.parsePacket(lib.encodeMsgpack({ type: 9, nsp: '/' })).sio, 'unknown');
  assert.equal(lib.parsePacket(lib.encodeMsgpack([1, 2])).sio, 'unknown');

  assert.deepEqual(lib.parseFrame('0{"sid":"x","pingInterval":25000}'), { eio: 'open', data: { sid: 'x', pingInterval: 25000 } });
  assert.deepEqual(['1', '2', '3', '6', '9'].map((t) => lib.parseFrame(t).eio), ['close', 'ping', 'pong', 'noop', 'unknown']);
  assert.deepEqual(lib.parseFrame('4hello'), { eio: 'message', data: 'hello' });
});

test('the k6 packets talk to a real socket.io server with the msgpack parser: auth, subscribe with ack, events, ping/pong', async () => {
  const http = createServer();
  const io = new Server(http, { parser: msgpackParser, transports: ['websocket'], pingInterval: 300, pingTimeout: 2000 });
  after(() => { io.close(); http.close(); });
  const updates = [{ id: 'car-7', lat: 41.15, lon: -8.61, ts: 1795307507110 }, { id: 'bus-1', lat: 41.1, lon: -8.6, ts: 1795307507111, speed: 0, heading: 90, kind: 'bus', status: 'on_trip' }];
  const { Packr } = await import('msgpackr');
  const packr = new Packr({ useRecords: false });
  io.use((socket, next) => {
    const auth = socket.handshake.auth as { token?: string };
    if (auth.token !== 'good') return next(Object.assign(new Error('bad token'), { data: { code: 'UNAUTHORIZED' } }));
    next();
  });
  io.on('connection', (socket) => {
    socket.on('subscribe', (req: { tiles: string[] }, ack: (r: unknown) => void) => {
      ack({ ok: true, tiles: req.tiles });
      // As the gateway sends a room frame (src/rooms/io-server.ts): msgpackr-packed PackedEntity[].
      socket.emit('update', req.tiles[0], packr.pack(updates.map(packEntity)));
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  const port = (http.address() as { port: number }).port;

  const talk = (token: string): Promise<Array<Frame | Packet>> => new Promise((resolve, reject) => {
    const seen: Array<Frame | Packet> = [];
    const ws = new WebSocket(`ws://127.0.0.1:${port}${lib.SIO_PATH}`);
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`timeout; seen ${JSON.stringify(seen)}`)); }, 5000);
    let pings = 0;
    const done = (): void => { clearTimeout(timer); ws.close(); resolve(seen); };
    ws.on('message', (data, isBinary) => {
      const raw = data as Buffer;
      if (!isBinary) {
        const f = lib.parseFrame(raw.toString());
        seen.push(f);
        if (f.eio === 'open') ws.send(lib.sioConnectPacket({ token }));
        else if (f.eio === 'ping') { pings++; ws.send('3'); }
      } else {
        const p = lib.parsePacket(raw);
        seen.push(p);
        if (p.sio === 'connect') ws.send(lib.sioEventPacket('subscribe', [{ tiles: ['14/7823/6170'] }], 1));
        else if (p.sio === 'connect_error') return done();
      }
      // Done once the event arrived and the server pinged twice (we answered the first pong in time).
      if (seen.some((x) => 'sio' in x && x.sio === 'event') && pings >= 2) done();
    });
    ws.on('error', reject);
  });

  const ok = await talk('good');
  assert.equal((ok[0] as Frame).eio, 'open');
  const connect = ok.find((f) => 'sio' in f && f.sio === 'connect') as Packet;
  assert.equal(connect.ackId, undefined);
  assert.equal(typeof (connect.data as { sid: unknown }).sid, 'string'); // { sid, pid: undefined } (notepack's fixext undefined)
  const ack = ok.find((f) => 'sio' in f && f.sio === 'ack');
  assert.deepEqual(ack, { sio: 'ack', ackId: 1, data: [{ ok: true, tiles: ['14/7823/6170'] }] });
  const ev = ok.find((f) => 'sio' in f && f.sio === 'event') as Packet;
  const [name, tile, payload] = ev.data as [string, string, Uint8Array];
  assert.equal(name, 'update');
  assert.equal(tile, '14/7823/6170');
  assert.ok(payload instanceof Uint8Array, 'the room payload is a bin');
  const decoded = lib.decodeMsgpack(payload) as unknown[];
  assert.deepEqual(decoded.map((a) => lib.unpackEntity(a)), updates);
  assert.deepEqual(decoded.map((a) => unpackEntity(a as PackedEntity)), updates);
  assert.ok(ok.filter((f) => 'eio' in f && f.eio === 'ping').length >= 2);

  const refused = await talk('bad');
  assert.deepEqual(refused.at(-1), { sio: 'connect_error', ackId: undefined, data: { message: 'bad token', data: { code: 'UNAUTHORIZED' } } });
  assert.equal(((refused.at(-1) as Packet).data as { data: { code: string } }).data.code, 'UNAUTHORIZED');
});

test('decodeMsgpack reads what the gateway packs (msgpackr)', async () => {
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

  // notepack.io 2.x (socket.io-msgpack-parser) extension type 0: undefined (socket.io's CONNECT
  // reply carries pid: undefined), Date, and non-Buffer byte containers.
  const fromNotepack = lib.decodeMsgpack(notepack.encode({ sid: 'abc', pid: undefined, at: new Date(1795307507110), ab: new Uint8Array([4, 5, 6]), big: new Uint8Array(300).fill(2) })) as Record<string, unknown>;
  assert.ok('pid' in fromNotepack && fromNotepack.pid === undefined);
  assert.deepEqual(fromNotepack.at, new Date(1795307507110));
  assert.deepEqual(norm(fromNotepack.ab), { bin: [4, 5, 6] });
  assert.deepEqual(norm(fromNotepack.big), { bin: new Array(300).fill(2) });
  assert.throws(() => lib.decodeMsgpack(new Uint8Array([0xd4, 0x05, 0x00])), /unsupported extension type 5/);

  // A room update as the gateway sends it with socket.io-msgpack-parser: one packet whose data[2]
  // is a bin holding positional entities (packEntity), which the script turns back into objects.
  const updates = [{ id: 'car-7', lat: 41.15, lon: -8.61, ts: 1795307507110 }, { id: 'bus-1', lat: 41.1, lon: -8.6, ts: 1795307507111, speed: 0, heading: 90, kind: 'bus', status: 'on_trip' }];
  const pkt = lib.parsePacket(parserEncode({ type: 2, nsp: '/', data: ['snapshot', '13/3900/3066', packr.pack(updates.map(packEntity))] }));
  assert.equal(pkt.sio, 'event');
  assert.equal((pkt.data as unknown[])[0], 'snapshot');
  const decoded = lib.decodeMsgpack((pkt.data as Uint8Array[])[2]!) as unknown[];
  assert.deepEqual(decoded.map((a) => lib.unpackEntity(a)), updates);
  assert.deepEqual(decoded.map((a) => unpackEntity(a as PackedEntity)), updates);
});

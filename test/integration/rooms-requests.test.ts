import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io, type Socket } from 'socket.io-client';
import { unpack } from 'msgpackr';
import { startRoomsServer, type RoomsServer } from '../helpers/rooms-server.js';
import { token } from '../helpers/tokens.js';
import { waitFor, sleep } from '../helpers/wait.js';
import { cellOf, tileBBox, parseTile, tilesInBBox, tileKey } from '../../src/geo/tiles.js';
import { roomsParser } from '../../src/protocol/rooms-parser.js';
import { SOCKET_PATH, type ClientToServerEvents, type ServerToClientEvents, type SubscribeAck } from '../../src/protocol/rooms.js';

/**
 * The server's side of subscribe / viewport / unsubscribe / follow requests, with a snapshot
 * reader the test delays or fails (test/helpers/rooms-server.ts): a failed request leaves
 * nothing behind, overlapping requests are answered in order and leave the server holding what
 * the last ack says, bad viewports are refused. Raw socket.io clients, so the server is checked
 * on its own (the client module's side is in map-client-state.test.ts).
 */
let S: RoomsServer;
const open: Socket[] = [];

before(async () => { S = await startRoomsServer({ maxTilesPerClient: 8 }); });
after(async () => {
  for (const s of open) s.close();
  await S?.stop();
});

type Raw = Socket<ServerToClientEvents, ClientToServerEvents>;
interface Seen { kind: string; tile: string; ids: string[] }

/** A raw client recording every frame (and the acks, in the same timeline). */
async function raw(sub = 'map'): Promise<{ s: Raw; seen: Seen[] }> {
  const s: Raw = io(S.url, { path: SOCKET_PATH, parser: roomsParser, transports: ['websocket'], auth: { token: await token(sub, ['subscribe', 'admin']) }, forceNew: true, reconnection: false });
  open.push(s);
  const seen: Seen[] = [];
  const ids = (p: Uint8Array): string[] => (unpack(p) as ([string] | { id: string })[]).map((e) => (Array.isArray(e) ? e[0] : e.id));
  s.on('snapshot', (tile, p) => seen.push({ kind: 'snapshot', tile, ids: ids(p) }));
  s.on('update', (tile, p) => seen.push({ kind: 'update', tile, ids: ids(p) }));
  s.on('left', (tile, p) => seen.push({ kind: 'left', tile, ids: ids(p) }));
  s.on('entity', (id) => seen.push({ kind: 'entity', tile: id, ids: [id] }));
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('connect_error', reject); });
  return { s, seen };
}

const ack = (s: Raw, ev: 'subscribe' | 'unsubscribe', tiles: string[]): Promise<SubscribeAck> => s.timeout(5000).emitWithAck(ev, { tiles });
const viewport = (s: Raw, bbox: [number, number, number, number], zoom: number): Promise<SubscribeAck> => s.timeout(5000).emitWithAck('viewport', { bbox, zoom });

/** A point in the middle of a tile. */
function centre(tile: string): { lat: number; lon: number } {
  const [w, s, e, n] = tileBBox(parseTile(tile)!);
  return { lon: (w + e) / 2, lat: (s + n) / 2 };
}

let seq = 0;
/** An entity of tenant acme moves into the middle of `tile` (as ingest reports it to the rooms). */
function move(tile: string, id = `car-${++seq}`, ts = Date.now()): string {
  S.rooms.moved([{ now: { tenant: 'acme', id, ...centre(tile), ts } }]);
  return id;
}

/** Does a delta in `tile` reach this client? (moves an entity there and waits up to ms.) */
async function receives(seen: Seen[], tile: string, ms = 300): Promise<boolean> {
  const id = move(tile);
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (seen.some((f) => f.kind === 'update' && f.tile === tile && f.ids.includes(id))) return true;
    await sleep(20);
  }
  return false;
}

/** Four z15 tiles in a 2×2 block and the bbox that covers exactly them (inset from the edges). */
function block(x: number, y: number): { tiles: string[]; bbox: [number, number, number, number] } {
  const nw = tileBBox({ z: 15, x, y }), se = tileBBox({ z: 15, x: x + 1, y: y + 1 });
  const bbox: [number, number, number, number] = [nw[0] + 1e-4, se[1] + 1e-4, se[2] - 1e-4, nw[3] - 1e-4];
  const tiles = tilesInBBox(bbox, 15)!.map(tileKey).sort();
  assert.equal(tiles.length, 4);
  return { tiles, bbox };
}

test('a subscribe whose snapshot read fails leaves nothing behind: no room, no deltas, no place under the tile cap', async () => {
  const { s, seen } = await raw();
  const tile = cellOf(-8.611, 41.149, 15);
  S.reader.failNext(tile);
  const res = await ack(s, 'subscribe', [tile]);
  assert.equal(!res.ok && res.code, 'UNAVAILABLE');
  assert.equal(await receives(seen, tile), false, 'no deltas for a tile whose subscribe failed');
  // The failed tile takes no place under the cap (8): eight other tiles still fit.
  const eight = Array.from({ length: 8 }, (_, i) => `15/${15600 + i}/12300`);
  assert.deepEqual(await ack(s, 'subscribe', eight), { ok: true, tiles: eight });
  // A tile held before a failed re-subscribe stays held.
  S.reader.failNext(eight[0]!);
  assert.equal((await ack(s, 'subscribe', [eight[0]!])).ok, false);
  assert.equal(await receives(seen, eight[0]!), true, 'a tile already held keeps its deltas');
});

test('a viewport change whose snapshot read fails keeps the previous viewport; the retry gets every snapshot', async () => {
  const { s, seen } = await raw();
  const A = block(15620, 12320), B = block(15640, 12320);
  const a = await viewport(s, A.bbox, 15);
  assert.deepEqual(a.ok && [...a.tiles].sort(), A.tiles);
  S.reader.failNext(B.tiles[2]!);
  const b = await viewport(s, B.bbox, 15);
  assert.equal(!b.ok && b.code, 'UNAVAILABLE');
  assert.equal(await receives(seen, A.tiles[0]!), true, 'the previous viewport still gets deltas');
  assert.equal(await receives(seen, B.tiles[0]!), false, 'the failed viewport gets none');
  seen.length = 0;
  const again = await viewport(s, B.bbox, 15);
  assert.ok(again.ok);
  assert.deepEqual(seen.filter((f) => f.kind === 'snapshot').map((f) => f.tile).sort(), B.tiles, 'a snapshot for each new tile');
  assert.equal(await receives(seen, A.tiles[0]!), false, 'the old viewport was left');
});

test('a follow whose read fails leaves the entity room', async () => {
  const { s, seen } = await raw();
  S.reader.failEntity('drv-f1');
  const res = await s.timeout(5000).emitWithAck('follow', { id: 'drv-f1' });
  assert.equal(!res.ok && res.code, 'UNAVAILABLE');
  S.rooms.moved([{ now: { tenant: 'acme', id: 'drv-f1', lat: 41.1, lon: -8.6, ts: Date.now() } }]);
  await sleep(300);
  assert.deepEqual(seen.filter((f) => f.kind === 'entity'), []);
});

test('overlapping viewports: a slow one and a quick one are answered in order, and the server holds the last', async () => {
  const { s, seen } = await raw();
  const big = block(15660, 12320);
  // B: one tile that A also covers (answered at once before, as it needed no snapshot).
  const small = tileBBox(parseTile(big.tiles[0]!)!);
  const bBox: [number, number, number, number] = [small[0] + 1e-4, small[1] + 1e-4, small[2] - 1e-4, small[3] - 1e-4];
  const gate = S.reader.hold(big.tiles[3]!);
  const order: string[] = [];
  const pa = viewport(s, big.bbox, 15).then((r) => { order.push('A'); return r; });
  await gate.reached;
  const pb = viewport(s, bBox, 15).then((r) => { order.push('B'); return r; });
  await sleep(100);
  gate.release();
  const [ra, rb] = await Promise.all([pa, pb]);
  assert.deepEqual(order, ['A', 'B'], 'acks in request order');
  assert.ok(ra.ok && rb.ok);
  assert.deepEqual(rb.ok && rb.tiles, [big.tiles[0]]);
  assert.equal(await receives(seen, big.tiles[0]!), true);
  assert.equal(await receives(seen, big.tiles[3]!), false, 'A\'s other tiles were left: the server holds B');
});

test('unsubscribe while the subscribe\'s snapshot is pending: snapshot, subscribe ack, then unsubscribe ack, and nothing after', async () => {
  const { s, seen } = await raw();
  const tile = cellOf(-8.5, 41.2, 16);
  const gate = S.reader.hold(tile);
  const order: string[] = [];
  s.on('snapshot', (t) => { if (t === tile) order.push('snapshot'); });
  const ps = ack(s, 'subscribe', [tile]).then((r) => { order.push(`subscribe ${r.ok}`); });
  await gate.reached;
  const pu = ack(s, 'unsubscribe', [tile]).then((r) => { order.push(`unsubscribe ${r.ok}`); });
  await sleep(100);
  gate.release();
  await Promise.all([ps, pu]);
  assert.deepEqual(order, ['snapshot', 'subscribe true', 'unsubscribe true']);
  assert.equal(await receives(seen, tile), false);
});

test('a socket that disconnects while its request waits keeps no room', async () => {
  const { s } = await raw();
  const tile = cellOf(-8.45, 41.25, 17);
  const gate = S.reader.hold(tile);
  void ack(s, 'subscribe', [tile]).catch(() => undefined);
  await gate.reached;
  // A second request queued behind the first one, then the socket goes away.
  const other = cellOf(-8.44, 41.26, 17);
  void ack(s, 'subscribe', [other]).catch(() => undefined);
  s.close();
  await sleep(50);
  gate.release();
  await sleep(200);
  // Had a queued request joined a room after the disconnect, its shard channel would stay subscribed.
  await waitFor(async () => ((await S.roomSubscribers('acme', tile)) === 0 && (await S.roomSubscribers('acme', other)) === 0) || undefined, 3000, 'rooms left');
});

test('viewport bounds: longitudes outside [-180, 180] and latitudes outside [-90, 90] are BAD_REQUEST', async () => {
  const { s } = await raw();
  const bad: [number, number, number, number][] = [
    [190, 10, 200, 11], // west > 180
    [10, 10, -190, 11], // east < -180
    [-190, 10, 10, 11],
    [10, 10, 190, 11],
    [10, -91, 11, 10],
    [10, 10, 11, 91],
    [10, 12, 11, 10], // south > north
    [Number.NaN, 10, 11, 11],
  ];
  for (const bbox of bad) {
    const r = await viewport(s, bbox, 15);
    assert.equal(!r.ok && r.code, 'BAD_REQUEST', `bbox ${JSON.stringify(bbox)}`);
    assert.match(!r.ok ? r.message : '', /bbox/);
  }
  // Still accepted: the antimeridian (west > east), and latitudes beyond the Mercator limit (clamped).
  const cross = await viewport(s, [179.99, 10, -179.99, 10.01], 12);
  assert.ok(cross.ok, JSON.stringify(cross));
  assert.deepEqual([...(cross.ok ? cross.tiles : [])].map((t) => t.split('/')[1]).sort(), ['0', '4095']);
  const polar = await viewport(s, [10, 86, 10.01, 90], 12);
  assert.ok(polar.ok && polar.tiles.every((t) => t.endsWith('/0')), JSON.stringify(polar));
});

test('a token valid for months keeps its socket (the expiry timer is armed in chunks, not fired at once)', async () => {
  const s = io(S.url, { path: SOCKET_PATH, parser: roomsParser, transports: ['websocket'], auth: { token: await token('long', ['subscribe'], 'acme', 90 * 86_400) }, forceNew: true, reconnection: false });
  open.push(s);
  const reasons: string[] = [];
  s.on('disconnect', (r) => reasons.push(r));
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('connect_error', reject); });
  await sleep(300);
  assert.equal(s.connected, true);
  assert.deepEqual(reasons, []);
});

test('a tile-aligned viewport is exactly its tiles: a 2×4 block at the cap of 8 is accepted', async () => {
  const { s } = await raw();
  const nw = tileBBox({ z: 15, x: 15700, y: 12400 }), se = tileBBox({ z: 15, x: 15701, y: 12403 });
  const res = await viewport(s, [nw[0], se[1], se[2], nw[3]], 15);
  assert.ok(res.ok, JSON.stringify(res));
  assert.equal(res.tiles.length, 8);
  assert.deepEqual([...new Set(res.tiles.map((t) => t.split('/')[1]))].sort(), ['15700', '15701']);
});

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { us_listen_socket } from 'uWebSockets.js';
import { loadUws } from '../../src/gateway/uws.js';
import { Server } from 'socket.io';
import { pack } from 'msgpackr';
import { startRoomsServer, type RoomsServer } from '../helpers/rooms-server.js';
import { token } from '../helpers/tokens.js';
import { until, sleep, waitFor } from '../helpers/wait.js';
import { tileBBox, parseTile, tilesInBBox, tileKey } from '../../src/geo/tiles.js';
import { roomsParser } from '../../src/protocol/rooms-parser.js';
import { SOCKET_PATH, packEntity, type EntityUpdate, type SubscribeAck } from '../../src/protocol/rooms.js';
import { MapClient, type MapClientOptions, type ResubscribeFailure, type MapConnectError } from '../../src/clients/map-client.js';

/**
 * The client module's state against the in-process rooms server (snapshot reads the test
 * delays or fails, test/helpers/rooms-server.ts), and against a scripted socket.io server for
 * ack orders the real server no longer produces: deltas racing a snapshot, overlapping
 * requests, frames of tiles not held, and what happens after a reconnect.
 */
let S: RoomsServer;
const open: { close(): unknown }[] = [];

before(async () => { S = await startRoomsServer({ maxTilesPerClient: 16 }); });
after(async () => {
  for (const c of open) await c.close();
  await S?.stop();
});

async function client(opts: MapClientOptions = {}, url = S.url, tok?: string | (() => Promise<string>)): Promise<MapClient> {
  const m = await MapClient.connect(url, tok ?? await token(`map-${Math.random()}`, ['subscribe', 'admin']), { retryMinMs: 100, retryMaxMs: 400, ...opts });
  open.push(m);
  return m;
}

/** A point in the middle of a tile, and one in the middle of its eastern neighbour. */
function centre(tile: string): { lat: number; lon: number } {
  const [w, s, e, n] = tileBBox(parseTile(tile)!);
  return { lon: (w + e) / 2, lat: (s + n) / 2 };
}
function east(tile: string): string {
  const t = parseTile(tile)!;
  return `${t.z}/${t.x + 1}/${t.y}`;
}
const at = (id: string, tile: string, ts: number): EntityUpdate => ({ id, ...centre(tile), ts });
const moved = (u: EntityUpdate, prev?: EntityUpdate): void => S.rooms.moved([{ now: { tenant: 'acme', ...u }, ...(prev ? { prev: { lat: prev.lat, lon: prev.lon } } : {}) }]);

let n = 0;
const freshTile = (z = 16): string => `${z}/${20000 + (n++) * 3}/24000`;

test('a left that arrives before the tile\'s snapshot is applied after it: the vehicle does not come back', async () => {
  const m = await client();
  const tile = freshTile();
  const t0 = Date.now();
  const car = at('car-l', tile, t0);
  S.reader.tiles.set(tile, [car]); // the snapshot is read before the move
  const gate = S.reader.hold(tile);
  const lefts: string[] = [];
  m.on('left', (t, l) => { if (t === tile) lefts.push(...l.map((x) => x.id)); });
  const sub = m.subscribeTiles([tile]);
  await gate.reached;
  moved(at('car-l', east(tile), t0 + 1000), car); // it moves out: 'left' for the tile
  await until(() => lefts.includes('car-l'), 3000, 'left frame');
  gate.release();
  assert.ok((await sub).ok);
  assert.equal(m.tileState(tile).has('car-l'), false, 'left before the snapshot still applies');
});

test('an update that arrives before the snapshot wins over the older snapshot; an expiry too', async () => {
  const m = await client();
  const tile = freshTile();
  const t0 = Date.now();
  const a = at('car-u', tile, t0), b = at('car-x', tile, t0);
  S.reader.tiles.set(tile, [a, b]);
  const gate = S.reader.hold(tile);
  let updates = 0, lefts = 0;
  m.on('update', (t) => { if (t === tile) updates++; });
  m.on('left', (t) => { if (t === tile) lefts++; });
  const sub = m.subscribeTiles([tile]);
  await gate.reached;
  const newer = { ...a, lat: a.lat + 1e-5, ts: t0 + 500 };
  moved(newer, a);
  S.rooms.expired([{ tenant: 'acme', ...b }]);
  await until(() => updates > 0 && lefts > 0, 3000, 'update and left frames');
  gate.release();
  assert.ok((await sub).ok);
  assert.equal(m.tileState(tile).get('car-u')?.ts, newer.ts);
  assert.equal(m.tileState(tile).has('car-x'), false);
  // Later deltas apply as usual.
  moved({ ...newer, ts: t0 + 900 }, newer);
  await until(() => m.tileState(tile).get('car-u')?.ts === t0 + 900, 3000, 'later update');
});

test('overlapping viewports and an unsubscribe during a subscribe leave the client holding what the server holds', async () => {
  const m = await client();
  const x = 20500 + (n++) * 4;
  const nw = tileBBox({ z: 16, x, y: 24100 }), se = tileBBox({ z: 16, x: x + 1, y: 24101 });
  const big: [number, number, number, number] = [nw[0] + 1e-5, se[1] + 1e-5, se[2] - 1e-5, nw[3] - 1e-5];
  const bigTiles = tilesInBBox(big, 16)!.map(tileKey);
  const first = bigTiles[0]!;
  const fb = tileBBox(parseTile(first)!);
  const small: [number, number, number, number] = [fb[0] + 1e-5, fb[1] + 1e-5, fb[2] - 1e-5, fb[3] - 1e-5];
  const gate = S.reader.hold(bigTiles[3]!);
  const pa = m.subscribeViewport(big, 16);
  await gate.reached;
  const pb = m.subscribeViewport(small, 16);
  await sleep(50);
  gate.release();
  const [ra, rb] = await Promise.all([pa, pb]);
  assert.ok(ra.ok && rb.ok);
  assert.deepEqual(m.subscribedTiles(), [first]);
  for (const t of bigTiles.slice(1)) assert.equal(m.tileState(t).size, 0);

  const tile = freshTile();
  S.reader.tiles.set(tile, [at('car-us', tile, Date.now())]);
  const g2 = S.reader.hold(tile);
  const ps = m.subscribeTiles([tile]);
  await g2.reached;
  const pu = m.unsubscribe([tile]);
  g2.release();
  await Promise.all([ps, pu]);
  assert.deepEqual(m.subscribedTiles(), [first]);
  assert.equal(m.tileState(tile).size, 0);
  const got: string[] = [];
  m.on('update', (t) => got.push(t));
  moved(at('car-us2', tile, Date.now()));
  await sleep(200);
  assert.deepEqual(got, []);
});

/** A bbox inside one tile (a viewport of exactly that tile at its zoom). */
function inside(tile: string): [number, number, number, number] {
  const [w, s, e, n] = tileBBox(parseTile(tile)!);
  const dx = (e - w) / 10;
  const dy = (n - s) / 10;
  return [w + dx, s + dy, e - dx, n - dy];
}

test('requests the client timed out on but the server applied later are undone there', async () => {
  const m = await client({ ackTimeoutMs: 300 });
  const kept = freshTile();
  assert.ok((await m.subscribeViewport(inside(kept), 16)).ok);
  // A slow snapshot holds this socket's requests; the three behind it time out on the client too.
  const slow = freshTile();
  const gate = S.reader.hold(slow);
  const other = freshTile();
  const sub = m.subscribeTiles([slow]);
  const view = m.subscribeViewport(inside(other), 16);
  const follow = m.followEntity('car-late');
  await gate.reached;
  for (const p of [sub, view, follow]) await assert.rejects(p, /timed out/);
  assert.deepEqual(m.subscribedTiles(), [kept]);
  gate.release();
  // The server now applies all three, then the client's undoing: the slow tile dropped, the
  // held viewport put back, the entity unfollowed.
  // (Room channels are (un)subscribed asynchronously: wait, then check again once all is quiet.)
  const serverState = async (): Promise<number[]> => [
    await S.roomSubscribers('acme', slow), await S.roomSubscribers('acme', other),
    await S.roomSubscribers('acme#e', 'car-late'), await S.roomSubscribers('acme', kept)];
  await waitFor(async () => ((await serverState()).join() === '0,0,0,1') || undefined, 5000, 'server state back to the client\'s');
  await sleep(500);
  assert.deepEqual(await serverState(), [0, 0, 0, 1]);
  assert.deepEqual(m.subscribedTiles(), [kept]);
  assert.deepEqual(m.followedEntities(), []);
  // Still live on the viewport it holds.
  await until(() => { moved(at('car-k', kept, Date.now())); return m.tileState(kept).has('car-k'); }, 3000, 'update on the held viewport');
});

/**
 * A socket.io server that answers as the test scripts it (acks out of order, frames of any
 * tile). On uWS like the gateway: socket.io patches its in-memory adapter for uWS once an app is
 * attached in the process, after which a server on node's http cannot join rooms.
 */
async function scripted(onConnect: (socket: import('socket.io').Socket) => void): Promise<{ url: string; close(): Promise<void> }> {
  const { uws } = loadUws();
  const app = uws.App();
  const io = new Server({ path: SOCKET_PATH, parser: roomsParser, transports: ['websocket'] });
  io.attachApp(app);
  io.on('connection', onConnect);
  const listen = await new Promise<us_listen_socket>((resolve, reject) => app.listen('127.0.0.1', 0, (ls) => (ls ? resolve(ls) : reject(new Error('listen')))));
  const url = `http://127.0.0.1:${uws.us_socket_local_port(listen)}`;
  return {
    url,
    close: async () => {
      io.local.disconnectSockets(true);
      await new Promise<void>((r) => { io.close(() => r()); });
      uws.us_listen_socket_close(listen);
    },
  };
}

test('against a server that answers out of order: the later request wins, late snapshots and frames of tiles not held are dropped', async () => {
  const A = ['16/1/1', '16/1/2'], B = ['16/1/1'];
  const srv = await scripted((socket) => {
    socket.on('viewport', (req: { zoom: number }, ack: (a: SubscribeAck) => void) => {
      if (req.zoom === 16) setTimeout(() => { socket.emit('snapshot', '16/1/2', pack([])); ack({ ok: true, tiles: A }); }, 150);
      else ack({ ok: true, tiles: B }); // zoom 17 stands for "B" here
    });
    socket.on('subscribe', (req: { tiles: string[] }, ack: (a: SubscribeAck) => void) => {
      setTimeout(() => {
        socket.emit('snapshot', req.tiles[0]!, pack([packEntity({ id: 'ghost', lat: 1, lon: 1, ts: 1 })]));
        ack({ ok: true, tiles: req.tiles });
      }, 150);
    });
    socket.on('unsubscribe', (req: { tiles: string[] }, ack: (a: SubscribeAck) => void) => ack({ ok: true, tiles: req.tiles }));
    socket.on('stray', () => {
      socket.emit('update', '16/9/9', pack([packEntity({ id: 'stray', lat: 1, lon: 1, ts: 2 })]));
      socket.emit('snapshot', '16/9/9', pack([packEntity({ id: 'stray', lat: 1, lon: 1, ts: 2 })]));
    });
  });
  open.push(srv);
  const m = await client({}, srv.url, 'any-token');
  const pa = m.subscribeViewport([0, 0, 1, 1], 16);
  await sleep(20);
  const pb = m.subscribeViewport([0, 0, 1, 1], 17);
  await Promise.all([pa, pb]);
  assert.deepEqual(m.subscribedTiles(), B, 'the older viewport\'s late ack is ignored');
  assert.equal(m.tileState('16/1/2').size, 0);

  const ps = m.subscribeTiles(['16/5/5']);
  await sleep(20);
  await m.unsubscribe(['16/5/5']);
  await ps;
  assert.deepEqual(m.subscribedTiles(), B, 'a subscribe acked after the unsubscribe does not re-add the tile');
  assert.equal(m.tileState('16/5/5').size, 0, 'nor does its late snapshot');

  const seen: string[] = [];
  m.on('update', (t) => seen.push(t));
  m.on('snapshot', (t) => seen.push(t));
  (m.socket as unknown as { emit(ev: string): void }).emit('stray');
  await sleep(150);
  assert.deepEqual(seen, []);
  assert.equal(m.tileState('16/9/9').size, 0);
});

test('after a reconnect a slow or failing re-subscribe does not stop the rest; it is retried and reported; expired follows are gone', async () => {
  const m = await client({ ackTimeoutMs: 400 });
  const slow = freshTile(), failing = freshTile();
  const vTile = freshTile();
  const vb = tileBBox(parseTile(vTile)!);
  const vbox: [number, number, number, number] = [vb[0] + 1e-5, vb[1] + 1e-5, vb[2] - 1e-5, vb[3] - 1e-5];
  S.reader.tiles.set(slow, [at('car-s', slow, Date.now())]);
  S.reader.tiles.set(failing, [at('car-f', failing, Date.now())]);
  S.reader.tiles.set(vTile, [at('car-v', vTile, Date.now())]);
  S.reader.entities.set('drv-live', at('drv-live', vTile, Date.now()));
  S.reader.entities.set('drv-gone', at('drv-gone', vTile, Date.now()));
  assert.ok((await m.subscribeTiles([slow])).ok);
  assert.ok((await m.subscribeViewport(vbox, 16)).ok);
  assert.ok((await m.followEntity('drv-live')).ok);
  assert.ok((await m.followEntity('drv-gone')).ok);
  assert.ok(m.followed('drv-gone'));

  const failures: ResubscribeFailure[] = [];
  m.on('resubscribeFailed', (f) => failures.push(f));
  const reconnected = new Promise<SubscribeAck[]>((r) => m.on('reconnected', r));
  S.reader.entities.delete('drv-gone'); // it expires while the client is away
  S.reader.tiles.set(vTile, []); // and car-v left the viewport's tile
  const gate = S.reader.hold(slow); // the re-subscribe of `slow` gets no ack in time
  m.simulateDrop();
  await gate.reached;
  await until(() => failures.some((f) => f.request === 'subscribe' && f.code === 'TIMEOUT'), 3000, 'the timeout reported');
  gate.release();
  const acks = await reconnected;
  assert.equal(acks.length, 2);
  assert.equal(acks[0]!.ok, false);
  assert.ok(acks[1]!.ok, 'the viewport was re-sent despite the failed subscribe');
  assert.ok(failures[0]!.retrying && failures[0]!.retryInMs! > 0);
  assert.equal(m.tileState(vTile).has('car-v'), false, 'fresh snapshot of the viewport');
  await until(() => m.followed('drv-live'), 3000, 'the live follow re-sent');
  assert.equal(m.followed('drv-gone'), undefined, 'an entity that expired while away is no longer shown');
  // The retry brings `slow` back.
  await until(() => m.tileState(slow).has('car-s'), 5000, 'the retried subscribe');
  assert.deepEqual(m.subscribedTiles().sort(), [slow, vTile].sort());

  // Redis failing twice in a row: retried until it works, each failure reported.
  await m.subscribeTiles([failing]);
  failures.length = 0;
  S.reader.failNext(slow, 2);
  const back = new Promise<void>((r) => m.on('reconnected', () => r()));
  m.simulateDrop();
  await back;
  await until(() => m.tileState(slow).has('car-s') && m.tileState(failing).has('car-f'), 5000, 'both tiles back');
  assert.deepEqual(failures.map((f) => [f.request, f.code, f.attempt, f.retrying]), [['subscribe', 'UNAVAILABLE', 1, true], ['subscribe', 'UNAVAILABLE', 2, true]]);
});

test('a handshake refused after connect() succeeded is reported, and with a token provider retried', async () => {
  let good = true;
  const m = await client({}, S.url, async () => (good ? token('map-ref', ['subscribe']) : 'expired-or-bad'));
  const tile = freshTile();
  assert.ok((await m.subscribeTiles([tile])).ok);
  const refusals: [string, boolean][] = [];
  m.on('refused', (e: MapConnectError, retrying) => refusals.push([e.code, retrying]));
  const back = new Promise<void>((r) => m.on('reconnected', () => r()));
  good = false;
  m.simulateDrop();
  await until(() => refusals.length > 0, 5000, 'refusal reported');
  assert.deepEqual(refusals[0], ['UNAUTHORIZED', true]);
  good = true;
  await back;
  assert.ok(m.connected);
  assert.deepEqual(m.subscribedTiles(), [tile]);

  // A fixed token: reported, not retried (it cannot get better).
  const fixed = await client({}, S.url, await token('map-fixed', ['subscribe'], 'acme', 3));
  const fixedRefusals: boolean[] = [];
  fixed.on('refused', (_e, retrying) => fixedRefusals.push(retrying));
  // The token expires: the server disconnects the socket, and the client's next handshake is refused.
  await until(() => fixedRefusals.length > 0, 8000, 'fixed-token refusal reported');
  await sleep(500);
  assert.deepEqual(fixedRefusals, [false]);
});

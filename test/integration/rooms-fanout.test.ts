import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect as tcpConnect, type AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { Redis } from 'ioredis';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, type Child } from '../helpers/processes.js';
import { token, TEST_JWT_SECRET } from '../helpers/tokens.js';
import { mintHmacToken } from '../../src/auth/tokens.js';
import { cellOf } from '../../src/geo/tiles.js';
import { MapClient } from '../../src/clients/map-client.js';
import { DriverClient } from '../../src/clients/driver-client.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { unpack } from 'msgpackr';
import { roomsParser } from '../../src/protocol/rooms-parser.js';

/**
 * Fan-out cost: rooms nobody watches are never published; only gateways with members of a room
 * subscribe to its channel. Slow clients: a subscriber that stops reading is disconnected while
 * another subscriber of the same room keeps up.
 */
type Gw = Child & { url: string; port: number };
let A: Gw;
let B: Gw;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let redis: Redis;
const prefix = randomKeyPrefix();
const open: { close(): unknown }[] = [];

before(async () => {
  const { redisUrl } = testServices();
  db = await createTestDatabase();
  const env = {
    REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: prefix, ROOMS_COALESCE_MS: '25', ROOMS_REGISTRY_REFRESH_MS: '300',
    ROOMS_SLOW_CLIENT_BUFFER_BYTES: '65536', INGEST_RATE_PER_SECOND: '100000', INGEST_RATE_BURST: '100000', INGEST_RATE_ABUSE_PINGS: '100000',
  };
  [A, B] = await Promise.all([startGateway(env), startGateway(env)]);
  redis = new Redis(redisUrl);
});

after(async () => {
  for (const c of open) await c.close();
  await Promise.all([A?.stop(), B?.stop()]);
  redis?.disconnect();
  await db?.drop();
});


async function fleetDriver(gw: Gw): Promise<DriverClient> {
  const tok = await mintHmacToken(TEST_JWT_SECRET, { sub: 'fleet-1', tenant: 'acme', scopes: ['ingest'], fleet: true, ttlSeconds: 600, issuer: 'geoflux' });
  const d = await DriverClient.connect(gw.url, tok, { encoding: 'msgpack' });
  open.push({ close: () => d.close() });
  return d;
}

test('an unwatched room is never published; a watched one only reaches gateways with members', async () => {
  const lat = 40.4168, lon = -3.7038; // Madrid
  const tile = cellOf(lon, lat, 15);
  const channel = `${prefix}io#/#acme:${tile}#`;
  const spy = new Redis(testServices().redisUrl);
  open.push({ close: () => spy.disconnect() });
  const seen: Buffer[] = [];
  spy.on('smessageBuffer', (_c: Buffer, m: Buffer) => seen.push(m));
  await spy.ssubscribe(channel);

  const d = await DriverClient.connect(A.url, await token('car-f1', ['ingest']));
  open.push({ close: () => d.close() });
  const t0 = Date.now() - 60_000;
  for (let i = 0; i < 3; i++) await d.send({ id: 'car-f1', lat: lat + i * 1e-4, lon, ts: t0 + i * 1000, seq: i + 1 });
  await sleep(300);
  assert.equal(seen.length, 0, 'nobody watches the tile: nothing is published');

  const m = await MapClient.connect(B.url, await token('map-f', ['subscribe']));
  open.push(m);
  await m.subscribeTiles([tile]);
  // B (its member) and our spy subscribe to the room's shard channel; A does not.
  const [, count] = await redis.call('PUBSUB', 'SHARDNUMSUB', channel) as [string, number];
  assert.equal(Number(count), 2);
  await d.send({ id: 'car-f1', lat: lat + 5e-4, lon, ts: t0 + 10_000, seq: 10 });
  const deadline = Date.now() + 5000;
  while (m.tileState(tile).get('car-f1')?.ts !== t0 + 10_000 && Date.now() < deadline) await sleep(20);
  assert.equal(m.tileState(tile).get('car-f1')?.ts, t0 + 10_000, 'update reached B through the room channel');
  assert.ok(seen.length >= 1 && seen.length <= 2, `one frame per interval (got ${seen.length})`);
});

test('a subscriber that stops reading is disconnected; another subscriber of the room keeps up', async () => {
  const lat = 41.149, lon = -8.611;
  const tile = cellOf(lon, lat, 14);
  // The slow one: a raw engine.io/socket.io client that subscribes, then never reads again.
  // Engine.IO frames are text (`0{…}` open); socket.io packets are MessagePack, one binary
  // message each (the rooms' parser, src/protocol/rooms-parser.ts).
  const slow = new WebSocket(`${A.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`);
  open.push({ close: () => slow.terminate() });
  const text: string[] = [];
  const packets: { type: number; id?: number; data?: unknown }[] = [];
  slow.on('message', (m, isBinary) => {
    if (isBinary) packets.push(unpack(m as Buffer) as { type: number; id?: number });
    else text.push(m.toString());
  });
  await new Promise((resolve, reject) => { slow.once('open', resolve); slow.once('error', reject); });
  const seen = (what: string) => (): string => `${what}; got ${text.join(' | ')} ${JSON.stringify(packets)}`;
  const encoder = new roomsParser.Encoder();
  // (the parser's .d.ts says encode returns an ArrayBuffer; it returns [Buffer])
  const sendPacket = (packet: object): void => { slow.send((encoder.encode(packet) as unknown as Buffer[])[0]!); };
  await waitFor(() => text.find((s) => s.startsWith('0{')), 5000, seen('open frame'));
  sendPacket({ type: 0, nsp: '/', data: { token: await token('map-slow', ['subscribe']) } });
  await waitFor(() => packets.find((p) => p.type === 0), 5000, seen('CONNECT'));
  sendPacket({ type: 2, nsp: '/', id: 0, data: ['subscribe', { tiles: [tile] }] });
  await waitFor(() => packets.find((p) => p.type === 3 && p.id === 0), 5000, seen('subscribe ack'));
  slow.pause(); // stops reading the TCP socket (so it would not see the close either)

  const fast = await MapClient.connect(A.url, await token('map-fast', ['subscribe']));
  open.push(fast);
  await fast.subscribeTiles([tile]);
  let lagMax = 0;
  let received = 0;
  fast.on('update', (_t, list, at) => { received += list.length; for (const u of list) lagMax = Math.max(lagMax, at - u.ts); });

  // 300 entities in the tile, each moving every round: ~40 KB per room frame.
  const d = await fleetDriver(A);
  const N = 300;
  const pad = 'x'.repeat(24);
  let closed = false;
  const dropped = A.waitForLog((l) => l.msg === 'slow map client disconnected', 60_000).then((l) => { closed = true; return l; }, () => undefined);
  let sentRounds = 0;
  const start = Date.now();
  for (let round = 0; round < 300 && !closed && Date.now() - start < 30_000; round++) {
    const ts = Date.now();
    const batch = Array.from({ length: N }, (_, i) => ({
      id: `slow-test-vehicle-${pad}-${i}`, lat: lat + (i % 20) * 1e-4 + round * 1e-6, lon: lon + Math.floor(i / 20) * 1e-4,
      ts, kind: `kind-${pad}`, status: `status-${pad}`,
    }));
    await d.send(batch);
    sentRounds++;
    await sleep(25);
  }
  assert.ok(closed, `slow client not disconnected after ${sentRounds} rounds`);
  const line = await dropped;
  assert.ok(line && Number(line.buffered) > 65536);
  // The fast subscriber kept up meanwhile.
  await sleep(200);
  assert.ok(received >= N, `fast client received ${received} updates`);
  assert.ok(lagMax < 1000, `fast client lag ${lagMax} ms`);
  const metrics = await (await fetch(`${A.url}/metrics`)).text();
  assert.match(metrics, /geoflux_map_slow_disconnects_total [1-9]/);
});

test('stopping one gateway disconnects only its own map clients; they reconnect by themselves', async () => {
  const lat = 41.16, lon = -8.59;
  const tile = cellOf(lon, lat, 15);
  // A minimal TCP load balancer in front of B; once B is gone it sends new connections to A.
  let target = B.port;
  const conns = new Set<{ destroy(): unknown }>();
  const lb = createServer((c) => {
    const u = tcpConnect(target, '127.0.0.1');
    conns.add(c).add(u);
    c.pipe(u).pipe(c);
    const end = (): void => { c.destroy(); u.destroy(); };
    c.on('error', end).on('close', end);
    u.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => lb.listen(0, '127.0.0.1', resolve));
  open.push({ close: () => new Promise((resolve) => { lb.close(resolve); for (const c of conns) c.destroy(); }) });
  const onA = await MapClient.connect(A.url, await token('map-stay', ['subscribe']));
  const onB = await MapClient.connect(`http://127.0.0.1:${(lb.address() as AddressInfo).port}`, await token('map-gone', ['subscribe']));
  open.push(onA, onB);
  await onA.subscribeTiles([tile]);
  await onB.subscribeTiles([tile]);
  const reasons: string[] = [];
  onA.on('disconnect', (r) => reasons.push(`A:${r}`));
  const bGone = new Promise<string>((resolve) => onB.on('disconnect', resolve));
  target = A.port;
  assert.equal(await B.stop(), 0);
  assert.equal(await bGone, 'io server disconnect');
  // The client of B comes back (through the balancer, on A), re-subscribes, gets a snapshot.
  const snap = new Promise<string[]>((resolve) => onB.on('snapshot', (t, e) => { if (t === tile) resolve(e.map((u) => u.id)); }));
  const d = await DriverClient.connect(A.url, await token('car-stay', ['ingest']));
  open.push({ close: () => d.close() });
  const ts = Date.now();
  await d.send({ id: 'car-stay', lat, lon, ts, seq: 1 });
  const end = Date.now() + 5000;
  while (onA.tileState(tile).get('car-stay')?.ts !== ts && Date.now() < end) await sleep(20);
  assert.equal(onA.tileState(tile).get('car-stay')?.ts, ts);
  assert.deepEqual(reasons, [], 'clients of the other gateway stay connected');
  assert.ok(onA.connected);
  assert.deepEqual(await snap, ['car-stay']);
  assert.equal(onB.tileState(tile).get('car-stay')?.ts, ts);
});

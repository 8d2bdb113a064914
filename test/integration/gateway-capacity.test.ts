import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io, type Socket } from 'socket.io-client';
import { roomsParser } from '../../src/protocol/rooms-parser.js';
import { DriverClient, DriverConnectError } from '../../src/clients/driver-client.js';
import { startIngestEnv, type IngestEnv } from './ingest-helpers.js';
import { token } from '../helpers/tokens.js';
import { resolveMaxConnections, FD_RESERVE } from '../../src/gateway/capacity.js';

/**
 * Connection limit: past MAX_CONNECTIONS (drivers + map clients) new upgrades get 503 OVERLOADED
 * and socket.io handshakes are refused, instead of the process running out of file descriptors.
 */
let env: IngestEnv;
before(async () => { env = await startIngestEnv({ MAX_CONNECTIONS: '3' }); });
after(async () => { await env?.stop(); });

test('the limit follows the open-files limit unless set lower', () => {
  assert.equal(resolveMaxConnections(0, 20000), 20000 - FD_RESERVE);
  assert.equal(resolveMaxConnections(500, 20000), 500);
  assert.equal(resolveMaxConnections(50000, 20000), 20000 - FD_RESERVE);
  assert.equal(resolveMaxConnections(0, 100), 16, 'never below 16');
  assert.ok(Number((env.gw.logs.find((l) => l.msg === 'gateway listening') ?? {}).maxConnections) === 3);
});

test('drivers and map clients beyond the limit are refused with a clear error; room frees up again', async () => {
  const ws = env.gw.url.replace('http', 'ws');
  const drivers = await Promise.all([1, 2].map(async (i) => DriverClient.connect(ws, await token(`car-${i}`, ['ingest']))));
  const map1: Socket = io(env.gw.url, { parser: roomsParser, transports: ['websocket'], auth: { token: await token('map-1', ['subscribe']) }, reconnection: false });
  await new Promise<void>((resolve, reject) => { map1.on('connect', resolve); map1.on('connect_error', reject); });

  // Full: 2 drivers + 1 map client.
  await assert.rejects(DriverClient.connect(ws, await token('car-3', ['ingest'])), (err: unknown) => {
    assert.ok(err instanceof DriverConnectError);
    assert.equal(err.status, 503);
    assert.equal(err.code, 'OVERLOADED');
    return true;
  });
  const map2: Socket = io(env.gw.url, { parser: roomsParser, transports: ['websocket'], auth: { token: await token('map-2', ['subscribe']) }, reconnection: false });
  const refused = await new Promise<Error>((resolve, reject) => { map2.on('connect_error', resolve); map2.on('connect', () => reject(new Error('map-2 connected past the limit'))); });
  assert.ok(refused);
  map2.close();

  // The connected ones keep working.
  const r = await drivers[0]!.send({ id: 'car-1', lat: 41.15, lon: -8.61, ts: Date.now(), seq: 1 });
  assert.equal(r.count, 1);

  await drivers[1]!.close();
  await new Promise((res) => setTimeout(res, 100));
  const again = await DriverClient.connect(ws, await token('car-3', ['ingest']));
  await again.close();
  await drivers[0]!.close();
  map1.close();
});

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, type Child } from '../helpers/processes.js';
import { token } from '../helpers/tokens.js';
import { cellOf } from '../../src/geo/tiles.js';
import { MapClient } from '../../src/clients/map-client.js';
import { DriverClient } from '../../src/clients/driver-client.js';
import { SinkViewer } from '../../load-tests/lib/sink-viewer.js';
import { sleep, until } from '../helpers/wait.js';

/**
 * The fan-out benchmark's sink subscribers (`npm run bench -- --sample n`) against a real
 * gateway: they are admitted and refused as map clients are, and they count exactly the room
 * frames that a MapClient on the same tile receives, so the benchmark's starvation check holds
 * for them too.
 */
type Gw = Child & { url: string };
let gw: Gw;
let db: Awaited<ReturnType<typeof createTestDatabase>>;
const open: { close(): unknown }[] = [];

before(async () => {
  db = await createTestDatabase();
  gw = await startGateway({ REDIS_URL: testServices().redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix(), ROOMS_COALESCE_MS: '25' });
});

after(async () => {
  for (const c of open) await c.close();
  await gw?.stop();
  await db?.drop();
});

test('a sink is refused without the subscribe scope, as a map client is', async () => {
  await assert.rejects(SinkViewer.connect(gw.url, await token('sink-no-scope', ['ingest'])), /connect refused/);
});

test('a sink counts the same room frames as a MapClient on its tile, and nothing while not counting', async () => {
  const lat = 38.7223, lon = -9.1393; // Lisbon
  const tile = cellOf(lon, lat, 14);
  const map = await MapClient.connect(gw.url, await token('sink-map', ['subscribe']), { reconnect: false });
  open.push(map);
  const sink = await SinkViewer.connect(gw.url, await token('sink-1', ['subscribe']));
  open.push(sink);
  assert.deepEqual(await map.subscribeTiles([tile]), { ok: true, tiles: [tile] });
  const ack = await sink.subscribeTiles([tile]);
  assert.equal(ack.ok, true);
  let mapFrames = 0;
  map.on('update', () => { mapFrames++; });
  const d = await DriverClient.connect(gw.url, await token('sink-car', ['ingest']));
  open.push(d);
  // Not counting yet: a frame now is not counted.
  await d.send({ id: 'sink-car', lat, lon, ts: Date.now(), seq: 1 });
  await until(() => mapFrames === 1, 5000, 'the first frame');
  assert.equal(sink.frames, 0);
  sink.counting = true;
  // One ping per 100 ms (four coalescing intervals): one frame each.
  for (let i = 2; i <= 6; i++) {
    await d.send({ id: 'sink-car', lat: lat + i * 1e-5, lon, ts: Date.now(), seq: i });
    await sleep(100);
  }
  await until(() => mapFrames === 6 && sink.frames === 5, 5000, `six frames at the MapClient, five counted by the sink (got ${mapFrames}, ${sink.frames})`);
  await sleep(200);
  assert.equal(mapFrames, 6);
  assert.equal(sink.frames, 5, 'every frame the MapClient got while the sink counted');
});

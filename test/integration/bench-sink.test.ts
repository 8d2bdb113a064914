import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, type Child } from '../helpers/processes.js';
import { token } from '../helpers/tokens.js';
import { cellOf } from '../../src/geo/tiles.js';
import { MapClient } from '../../src/clients/map-client.js';
import { DriverClient } from '../../src/clients/driver-client.js';
import { SinkViewer } from '../../load-tests/lib/sink-viewer.js';
import { nativeSinkBinary, nativeSinkGen } from '../../load-tests/lib/native-sinks.js';
import type { Gen } from '../../load-tests/lib/gen-proc.js';
import { sleep, until } from '../helpers/wait.js';

/**
 * The fan-out benchmark's sink subscribers (`npm run bench -- --sample n`) against a real
 * gateway: they are admitted and refused as map clients are, and they count exactly the room
 * frames that a MapClient on the same tile receives, so the benchmark's starvation check holds
 * for them too. The same for the native sinks (load-tests/sink/sink.c, `--sinks native`), at
 * either reading pace.
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

const native = nativeSinkBinary();
const noCompiler = native.why ? `no C compiler here: ${native.why}` : false;

/** One native sink process holding one sink per tile, with the tokens given. */
async function nativeSinks(tiles: string[], tokens: string[], readEveryMs = 0): Promise<{ gen: Gen; opened: { ok: number; failed: number; firstError?: string } }> {
  const gen = nativeSinkGen(native.path!, { readEveryMs, token: async (i) => tokens[i]! });
  open.push({ close: () => gen.ask({ cmd: 'close' }, 10_000).catch(() => gen.proc.kill()) });
  const r = await gen.ask({ cmd: 'open-viewers', urls: [gw.url], tiles, gatewayOf: tiles.map(() => 0), sinkOf: tiles.map(() => true) }, 30_000);
  assert.equal(r.type, 'opened');
  return { gen, opened: r as { ok: number; failed: number; firstError?: string } };
}

test('native sinks: refused without the subscribe scope, as a map client is', { skip: noCompiler }, async () => {
  const { opened } = await nativeSinks(['14/1/1', '14/1/2'], [await token('native-no-scope', ['ingest']), await token('native-ok', ['subscribe'])]);
  assert.equal(opened.ok, 1);
  assert.equal(opened.failed, 1);
  assert.match(opened.firstError ?? '', /connect refused/);
});

for (const readEveryMs of [0, 50]) {
  test(`native sinks (reading ${readEveryMs ? `every ${readEveryMs} ms` : 'as frames arrive'}) count the same room frames as a MapClient on their tile, and nothing while not counting`, { skip: noCompiler }, async () => {
    const lat = 40.4168 + readEveryMs * 1e-4, lon = -3.7038; // Madrid, a tile per run
    const tile = cellOf(lon, lat, 14);
    const other = cellOf(lon + 1, lat, 14);
    const map = await MapClient.connect(gw.url, await token(`native-map-${readEveryMs}`, ['subscribe']), { reconnect: false });
    open.push(map);
    assert.equal((await map.subscribeTiles([tile])).ok, true);
    let mapFrames = 0;
    map.on('update', () => { mapFrames++; });
    const { gen, opened } = await nativeSinks([tile, tile, other], await Promise.all([0, 1, 2].map((i) => token(`native-${readEveryMs}-${i}`, ['subscribe']))), readEveryMs);
    assert.deepEqual(opened, { type: 'opened', ok: 3, failed: 0 });
    const d = await DriverClient.connect(gw.url, await token(`native-car-${readEveryMs}`, ['ingest']));
    open.push(d);
    await d.send({ id: `native-car-${readEveryMs}`, lat, lon, ts: Date.now(), seq: 1 });
    await until(() => mapFrames === 1, 5000, 'the first frame');
    await sleep(readEveryMs + 100);
    await gen.ask({ cmd: 'measure', on: true }, 5000);
    for (let i = 2; i <= 6; i++) {
      await d.send({ id: `native-car-${readEveryMs}`, lat: lat + i * 1e-5, lon, ts: Date.now(), seq: i });
      await sleep(100);
    }
    await until(() => mapFrames === 6, 5000, `six frames at the MapClient (got ${mapFrames})`);
    await sleep(readEveryMs + 200);
    const m = await gen.ask({ cmd: 'measure', on: false }, 5000);
    assert.equal(m.type, 'measured');
    if (m.type !== 'measured') return;
    assert.deepEqual(m.perViewer, [{ tile, frames: 5 }, { tile, frames: 5 }, { tile: other, frames: 0 }], 'every frame the MapClient got while counting; none on the quiet tile');
    assert.equal(m.sinks, 3);
    assert.equal(m.sinkFrames, 10);
  });
}

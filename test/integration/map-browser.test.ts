import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { projectRoot } from '../../src/config/load.js';
import { testServices, createTestDatabase, randomKeyPrefix } from '../helpers/services.js';
import { startGateway, startWorker, type Child } from '../helpers/processes.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The live map in a real headless Chromium (Debian `chromium` driven by playwright-core) against
 * a running gateway + worker + simulator: vehicles appear and move, subscriptions follow the
 * view, aggregates when zoomed out, vehicle details, nearby search, offline base map fallback.
 * Screenshots go to test-output/ (MAP_SCREENSHOT_DOCS=1 also copies one to docs/map-screenshot.png).
 * Skips, saying why, only when no Chromium is there (scripts/ensure-chromium.sh installs it).
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const OUT = join(projectRoot(), 'test-output');
const skip = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}: run scripts/ensure-chromium.sh as root (apt install chromium) or set CHROMIUM_PATH`;

type Playwright = typeof import('playwright-core');
type Browser = Awaited<ReturnType<Playwright['chromium']['launch']>>;
type Page = Awaited<ReturnType<Browser['newPage']>>;

interface Debug {
  ready: boolean; connected: boolean; tiles: string[]; aggregated: string[]; zoom: number | null; subscribeCount: number;
  updates: number; basemapErrors: number; basemapLoads: number; lastError: string | null;
  vehicleCount(): number; positions(): Record<string, [number, number, number]>; rendered(): Record<string, [number, number]>;
  nearby?: { id: string; distance: number }[];
  map: { setView(c: [number, number], z: number, o?: unknown): void; panTo(c: [number, number], o?: unknown): void; getBounds(): { getWest(): number; getEast(): number; getNorth(): number; getSouth(): number }; latLngToContainerPoint(c: [number, number]): { x: number; y: number } };
}
declare const window: { __geoflux: Debug };
declare const document: { querySelectorAll(s: string): { length: number; [i: number]: { textContent: string | null } }; getElementById(id: string): { textContent: string | null; classList: { contains(c: string): boolean } } | null };

let gateway: Child & { url: string };
let worker: Child;
let sim: ChildProcess | undefined;
const simLog: string[] = [];
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let browser: Browser | undefined;
let page: Page;

before(async () => {
  if (skip) return;
  const { redisUrl } = testServices();
  db = await createTestDatabase();
  const env = { REDIS_URL: redisUrl, DATABASE_URL: db.url, REDIS_KEY_PREFIX: randomKeyPrefix(), FLUSH_INTERVAL_MS: '1000' };
  gateway = await startGateway(env);
  worker = await startWorker(env);
  sim = spawn(process.execPath, [join(projectRoot(), 'dist/src/sim/cli.js'),
    '--url', gateway.url.replace('http', 'ws'), '--vehicles', '60', '--interval', '1-2', '--offline-mean', '0', '--seed', '7', '--duration', '180'], {
    env: { ...process.env, ...env, LOG_PRETTY: 'false', NODE_ENV: 'test' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  createInterface({ input: sim.stdout! }).on('line', (l) => simLog.push(l));
  sim.stderr!.on('data', (b: Buffer) => simLog.push(b.toString()));
  await waitFor(() => (simLog.some((l) => l.includes('"simulator running"')) ? true : undefined), 20_000, () => simLog.join('\n'), 100);
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  // No internet here (and none needed): every request off this machine fails, like offline use.
  await page.route('**/*', (r) => (new URL(r.request().url()).hostname === '127.0.0.1' ? r.continue() : r.abort()));
  mkdirSync(OUT, { recursive: true });
});

after(async () => {
  await browser?.close().catch(() => undefined);
  if (sim && sim.exitCode === null) {
    const exited = new Promise((r) => sim!.once('exit', r));
    sim.kill('SIGTERM');
    await exited;
  }
  await Promise.all([gateway?.stop(), worker?.stop()]);
  await db?.drop();
});

/** Runs `fn(window.__geoflux)` in the page (the function's source is sent, so it must be self-contained). */
const dbg = <T>(fn: (d: Debug) => T): Promise<T> => page.evaluate(`(${fn.toString()})(window.__geoflux)`) as Promise<T>;

test('vehicles appear on the map and move smoothly, with the offline base map', { skip }, async (t) => {
  await page.goto(`${gateway.url}/?zoom=14&center=41.1579,-8.6291`);
  await page.waitForFunction(() => window.__geoflux?.ready && window.__geoflux.vehicleCount() >= 10, null, { timeout: 20_000 });
  const first = await page.evaluate(() => window.__geoflux.positions());
  await page.waitForTimeout(4000);
  const later = await page.evaluate(() => window.__geoflux.positions());
  const moved = Object.keys(first).filter((id) => later[id] && (later[id]![0] !== first[id]![0] || later[id]![1] !== first[id]![1]));
  assert.ok(moved.length >= 5, `only ${moved.length} of ${Object.keys(first).length} vehicles moved in 4 s`);
  // Smooth: between two updates the drawn position glides (changes frame to frame).
  const a = await page.evaluate(() => window.__geoflux.rendered());
  await page.waitForTimeout(250);
  const b = await page.evaluate(() => window.__geoflux.rendered());
  const gliding = Object.keys(a).filter((id) => b[id] && (a[id]![0] !== b[id]![0] || a[id]![1] !== b[id]![1]));
  assert.ok(gliding.length >= 3, `only ${gliding.length} markers moved in 250 ms`);
  // Every vehicle drawn is in Porto (where the simulator drives).
  for (const [lat, lon] of Object.values(later)) assert.ok(lat > 41.13 && lat < 41.19 && lon > -8.7 && lon < -8.55);
  // Base tiles cannot load (no internet): the tile grid is there and the page says so.
  const s = await dbg((d) => ({ errors: d.basemapErrors, loads: d.basemapLoads, upd: d.updates }));
  assert.ok(s.errors > 0 && s.loads === 0);
  assert.ok(await page.evaluate(() => document.querySelectorAll('.leaflet-tile-container canvas').length) > 0, 'tile grid drawn');
  assert.ok(!(await page.evaluate(() => document.getElementById('basemap')!.classList.contains('hidden'))));
  assert.ok(s.upd > 20, `updates received: ${s.upd}`);
  // Side panel: live figures from /v1/stats.
  await page.waitForFunction(() => /^[\d.,]+$/.test(document.getElementById('f-pps')!.textContent ?? '') && Number(document.getElementById('f-live')!.textContent) > 0, null, { timeout: 10_000 });
  const live = Number(await page.evaluate(() => document.getElementById('f-live')!.textContent));
  assert.ok(live >= 50 && live <= 60, `entities live ${live}`);
  await page.screenshot({ path: join(OUT, 'map-browser-porto.png') });
  const figures = await page.evaluate(() => ['f-pps', 'f-live', 'f-delay', 'f-lag', 'v-delay', 'v-ups'].map((id) => `${id}=${document.getElementById(id)!.textContent}`).join(' '));
  t.diagnostic(`panel: ${figures}`);
});

test('click: vehicle details; click the map: nearest vehicles highlighted', { skip }, async () => {
  const target = await page.evaluate(() => {
    const d = window.__geoflux;
    const pos = d.rendered();
    const b = d.map.getBounds();
    const id = Object.keys(pos).find((k) => { const [la, lo] = pos[k]!; return la < b.getNorth() - 0.003 && la > b.getSouth() + 0.003 && lo > b.getWest() + 0.005 && lo < b.getEast() - 0.005; })!;
    const p = d.map.latLngToContainerPoint(pos[id]!);
    return { id, x: p.x, y: p.y };
  });
  await page.mouse.click(target.x, target.y);
  await page.waitForFunction((id) => (document.getElementById('details')!.textContent ?? '').includes(id), target.id, { timeout: 5000 });
  const text = await page.evaluate(() => document.getElementById('details')!.textContent ?? '');
  assert.match(text, /speed/);
  assert.match(text, /status/);

  // An empty spot near the centre: nearby search.
  await page.mouse.click(480, 420);
  await page.waitForFunction(() => (window.__geoflux.nearby?.length ?? 0) > 0, null, { timeout: 5000 });
  const near = await dbg((d) => d.nearby!);
  for (let i = 1; i < near.length; i++) assert.ok(near[i]!.distance >= near[i - 1]!.distance);
  assert.ok(await page.evaluate(() => document.querySelectorAll('#nearby li').length) === near.length);
  await page.screenshot({ path: join(OUT, 'map-browser-nearby.png') });
});

test('pan and zoom: the subscriptions follow the view', { skip }, async () => {
  const before = await dbg((d) => ({ tiles: d.tiles, count: d.subscribeCount }));
  assert.ok(before.tiles.length > 0 && before.tiles.every((t) => t.startsWith('14/')));
  await page.evaluate(() => window.__geoflux.map.panTo([41.1700, -8.5800], { animate: false }));
  await page.waitForFunction((n) => window.__geoflux.subscribeCount > n, before.count, { timeout: 10_000 });
  const after = await dbg((d) => { const b = d.map.getBounds(); return { tiles: d.tiles, bounds: [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()] }; });
  assert.notDeepEqual(after.tiles, before.tiles);
  const [w, s, e, n] = after.bounds as [number, number, number, number];
  for (const t of after.tiles) {
    const [tw, ts, te, tn] = tileBounds(t);
    assert.ok(tw <= e && te >= w && ts <= n && tn >= s, `tile ${t} is outside the view`);
  }
  // Tiles that left the view were dropped.
  for (const t of before.tiles) {
    const [tw, ts, te, tn] = tileBounds(t);
    if (!(tw <= e && te >= w && ts <= n && tn >= s)) assert.ok(!after.tiles.includes(t), `tile ${t} still subscribed`);
  }
  // Vehicles keep arriving, only from the new view's tiles.
  await page.waitForFunction(() => window.__geoflux.vehicleCount() >= 3, null, { timeout: 10_000 });
  await page.waitForTimeout(1500);
  const pos = await dbg((d) => d.positions());
  for (const [lat, lon] of Object.values(pos)) assert.ok(after.tiles.some((t) => { const [tw, ts, te, tn] = tileBounds(t); return lon >= tw && lon <= te && lat >= ts && lat <= tn; }), `vehicle at ${lat},${lon} outside the subscribed tiles`);
  await page.screenshot({ path: join(OUT, 'map-browser-panned.png') });

  // Zoomed out: aggregate counts instead of vehicles.
  const c2 = await dbg((d) => d.subscribeCount);
  await page.evaluate(() => window.__geoflux.map.setView([41.16, -8.62], 11, { animate: false }));
  await page.waitForFunction((n) => window.__geoflux.subscribeCount > n && window.__geoflux.zoom === 11, c2, { timeout: 10_000 });
  const agg = await dbg((d) => d.aggregated);
  assert.ok(agg.length > 0, 'zoomed out tiles are aggregated');
  await page.waitForFunction(() => document.querySelectorAll('.agg').length > 0, null, { timeout: 10_000 });
  const total = await page.evaluate(() => { const els = document.querySelectorAll('.agg'); let t = 0; for (let i = 0; i < els.length; i++) t += Number(els[i]!.textContent); return t; });
  assert.ok(total >= 50 && total <= 60, `aggregate total ${total}`);
  await page.screenshot({ path: join(OUT, 'map-browser-aggregates.png') });

  // Back to the city for the README picture, with one vehicle selected (details + trail).
  await page.evaluate(() => window.__geoflux.map.setView([41.1579, -8.6291], 14, { animate: false }));
  await page.waitForFunction(() => window.__geoflux.zoom === 14 && window.__geoflux.vehicleCount() >= 10, null, { timeout: 10_000 });
  await page.waitForTimeout(2000);
  const pick = await page.evaluate(() => {
    const d = window.__geoflux;
    const pos = d.rendered();
    let best: { id: string; x: number; y: number; r: number } | undefined;
    for (const [id, ll] of Object.entries(pos)) {
      const p = d.map.latLngToContainerPoint(ll);
      const r = Math.hypot(p.x - 490, p.y - 400);
      if (!best || r < best.r) best = { id, x: p.x, y: p.y, r };
    }
    return best!;
  });
  await page.mouse.click(pick.x, pick.y);
  await page.waitForFunction((id) => (document.getElementById('details')!.textContent ?? '').includes(id), pick.id, { timeout: 5000 });
  await page.waitForTimeout(4000);
  const shot = join(OUT, 'map-browser.png');
  await page.screenshot({ path: shot });
  if (process.env.MAP_SCREENSHOT_DOCS === '1') copyFileSync(shot, join(projectRoot(), 'docs', 'map-screenshot.png'));
});

test('the simulator stops cleanly on SIGTERM', { skip }, async () => {
  const exited = new Promise<number | null>((r) => sim!.once('exit', (code) => r(code)));
  sim!.kill('SIGTERM');
  assert.equal(await exited, 0);
  const summary = simLog.map((l) => { try { return JSON.parse(l) as Record<string, unknown>; } catch { return {}; } }).find((l) => l.msg === 'simulator summary');
  assert.ok(summary, 'summary logged');
  assert.ok(Number(summary.acked) > 100 && Number(summary.rejected) === 0, JSON.stringify(summary));
});

function tileBounds(t: string): [number, number, number, number] {
  const [z, x, y] = t.split('/').map(Number) as [number, number, number];
  const n = 2 ** z;
  const lon = (i: number): number => (i / n) * 360 - 180;
  const lat = (j: number): number => (Math.atan(Math.sinh(Math.PI * (1 - (2 * j) / n))) * 180) / Math.PI;
  return [lon(x), lat(y + 1), lon(x + 1), lat(y)];
}

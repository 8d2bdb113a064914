/**
 * The fleet simulator: N vehicles through the real driver protocol.
 *   npm run simulate -- --vehicles 200 [--city porto|dublin] [--bbox w,s,e,n] [--source roads|trace|grid]
 *                       [--interval 1-5] [--duration 0] [--url ws://127.0.0.1:8080] [--tenant demo]
 * See docs/map.md for every option. Ctrl-C (or SIGTERM) stops it cleanly.
 */
import { parseCliArgs } from '../lifecycle/cli-args.js';
import { resolve } from 'node:path';
import { loadConfig } from '../config/load.js';
import { defaultDataDir } from './data-dir.js';
import { createLogger } from '../log/logger.js';
import { runProcess } from '../lifecycle/run-process.js';
import { mintHmacToken } from '../auth/tokens.js';
import { buildFleetEntities, parseBBox, parseInterval, type SimSource } from './setup.js';
import { createFleet } from './fleet.js';

const USAGE = `geoflux simulator — N vehicles pinging a gateway through /v1/ingest

  --url ws://host:port    gateway (default ws://127.0.0.1:$PORT or 8080)
  -n, --vehicles N        fleet size (default 200)
  --city porto|dublin     preset area (default porto)
  --bbox w,s,e,n          any other area (synthetic street grid)
  --source roads|trace|grid  roads: Porto road graph; trace: Dublin bus replay; grid: synthetic
  --interval A-B          seconds between pings of a vehicle, each picks its own (default 1-5)
  --duration S            stop after S seconds (default 0 = until Ctrl-C)
  --tenant T              tenant of the tokens (default demo)
  --prefix P              entity id prefix (default: the city name)
  --offline-mean S        mean seconds online before the app drops (default 300, 0 = never)
  --offline-for A-B       seconds a drop lasts (default 15-90)
  --speedup K             trace replay time compression (default 1 = real time; >1 speeds buses up too)
  --encoding msgpack|json frames (default msgpack)
  --seed N                reproducible fleet (default 42)
  --data-dir DIR          data folder (default $SIM_DATA_DIR or <project>/../shared/data)
`;

const values = parseCliArgs(USAGE, {
  url: { type: 'string' },
  vehicles: { type: 'string', short: 'n', default: '200' },
  city: { type: 'string', default: 'porto' },
  bbox: { type: 'string' },
  source: { type: 'string' },
  interval: { type: 'string', default: '1-5' },
  duration: { type: 'string', default: '0' },
  tenant: { type: 'string', default: 'demo' },
  prefix: { type: 'string', default: '' },
  seed: { type: 'string', default: '42' },
  'offline-mean': { type: 'string', default: '300' },
  'offline-for': { type: 'string', default: '15-90' },
  speedup: { type: 'string', default: '1' },
  encoding: { type: 'string', default: 'msgpack' },
  'data-dir': { type: 'string' },
});

const cfg = loadConfig();
const log = createLogger(cfg, 'simulator');

function fail(msg: string): never {
  process.stderr.write(`simulator: ${msg}\n`);
  process.exit(2);
}

const vehicles = Number(values.vehicles);
if (!Number.isInteger(vehicles) || vehicles < 1 || vehicles > 100_000) fail('--vehicles must be an integer in 1..100000');
const interval = parseInterval(values.interval!) ?? fail('--interval must look like 1-5 (seconds)');
const offlineFor = parseInterval(values['offline-for']!) ?? fail('--offline-for must look like 15-90 (seconds)');
const duration = Number(values.duration);
if (!(duration >= 0)) fail('--duration must be >= 0 seconds');
const bbox = values.bbox ? (parseBBox(values.bbox) ?? fail('--bbox must be west,south,east,north in degrees')) : undefined;
const source = values.source as SimSource | undefined;
if (source && !['roads', 'trace', 'grid'].includes(source)) fail('--source must be roads, trace or grid');
const encoding = values.encoding === 'json' ? 'json' : 'msgpack';
const url = values.url ?? `ws://127.0.0.1:${process.env.PORT ?? cfg.http.port}`;
const dataDir = values['data-dir'] ? resolve(values['data-dir']) : defaultDataDir();

await runProcess({
  log,
  shutdownTimeoutMs: cfg.shutdown.timeoutMs,
  async start() {
    const setup = buildFleetEntities({
      city: values.city!, bbox, source, vehicles, dataDir, seed: Number(values.seed) || 42,
      prefix: values.prefix || undefined, intervalMs: [interval[0] * 1000, interval[1] * 1000],
      meanOnlineSeconds: Number(values['offline-mean']), offlineSeconds: offlineFor, speedup: Number(values.speedup) || 1,
    });
    log.info({ source: setup.source, area: setup.area, vehicles: setup.entities.length, dataDir, credit: setup.attribution, url }, 'simulator starting');
    const ttl = Math.max(86_400, Math.ceil(duration) + 3600);
    const fleet = createFleet({
      log, url, encoding, entities: setup.entities, onTick: setup.onTick,
      tokenFor: (id) => mintHmacToken(cfg.auth.jwtSecret, { sub: id, tenant: values.tenant!, scopes: ['ingest'], ttlSeconds: ttl, issuer: cfg.auth.issuer }),
    });
    const started = Date.now();
    await fleet.start();
    log.info({ ...fleet.stats() }, 'simulator running');

    const tty = Boolean(process.stderr.isTTY);
    let lastSent = 0, lastAt = started, lastLog = started;
    const progress = setInterval(() => {
      const s = fleet.stats();
      const now = Date.now();
      const rate = ((s.sent - lastSent) * 1000) / Math.max(1, now - lastAt);
      lastSent = s.sent; lastAt = now;
      const secs = Math.round((now - started) / 1000);
      if (tty) {
        process.stderr.write(`\r[sim] ${secs}s  vehicles ${s.online}/${s.vehicles} online (${s.connected} connected, ${s.onTrip} on trip)  pings sent ${s.sent} · acked ${s.acked} · ${rate.toFixed(1)}/s  rejected ${s.rejected}  skipped ${s.skipped}  drops ${s.drops}   `);
      } else if (now - lastLog >= 10_000) {
        lastLog = now;
        log.info({ ...s, rate: Math.round(rate * 10) / 10, elapsedS: secs }, 'simulator progress');
      }
    }, 1000);
    const timer = duration > 0 ? setTimeout(() => process.kill(process.pid, 'SIGTERM'), duration * 1000) : undefined;

    return {
      async stop() {
        clearInterval(progress);
        if (timer) clearTimeout(timer);
        if (tty) process.stderr.write('\n');
        await fleet.stop();
        log.info({ ...fleet.stats(), elapsedS: Math.round((Date.now() - started) / 1000) }, 'simulator summary');
      },
    };
  },
});

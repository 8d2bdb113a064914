/** Builds the simulated fleet for a city/area and a source (road graph, trace replay, grid). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BBox } from '../geo/tiles.js';
import { loadPortoRoads, syntheticGrid, PORTO_BBOX, type RoadGraph } from './roads.js';
import { loadDublinTraces, TraceVehicle, DUBLIN_ATTRIBUTION } from './trace.js';
import { RoadWalker } from './walker.js';
import { SimVehicle, VEHICLE_KINDS, DEFAULT_VEHICLE_OPTIONS, type VehicleKind } from './vehicle.js';
import { createRng } from './rng.js';
import type { SimEntity } from './fleet.js';

export type SimSource = 'roads' | 'trace' | 'grid';

export const CITIES: Record<string, BBox> = {
  porto: PORTO_BBOX,
  dublin: [-6.38, 53.29, -6.16, 53.42],
};

export interface SetupOptions {
  city: string;
  bbox?: BBox;
  source?: SimSource;
  vehicles: number;
  dataDir: string;
  seed: number;
  prefix?: string;
  intervalMs: [number, number];
  meanOnlineSeconds: number;
  offlineSeconds: [number, number];
  /** Trace replay time compression. */
  speedup: number;
}

export interface FleetSetup {
  source: SimSource;
  area: string;
  attribution: string;
  entities: SimEntity[];
  /** Lets a looping source restart (trace replay). */
  onTick?: (now: number) => void;
}

/** `1-5` or `3` → [min, max]. */
export function parseInterval(s: string): [number, number] | undefined {
  const m = /^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$/.exec(s.trim());
  if (!m) return undefined;
  const a = Number(m[1]), b = m[2] !== undefined ? Number(m[2]) : a;
  return a > 0 && b >= a ? [a, b] : undefined;
}

export function parseBBox(s: string): BBox | undefined {
  const p = s.split(',').map(Number);
  if (p.length !== 4 || p.some((v) => !Number.isFinite(v))) return undefined;
  const [w, so, e, n] = p as BBox;
  return w < e && so < n && w >= -180 && e <= 180 && so >= -85 && n <= 85 ? [w, so, e, n] : undefined;
}

/** Mix of kinds in a city fleet: mostly cars, some scooters, bikes and vans. */
const KIND_WEIGHTS: [VehicleKind, number][] = [['car', 0.6], ['scooter', 0.2], ['bike', 0.1], ['van', 0.1]];

function pickKind(r: number): VehicleKind {
  let acc = 0;
  for (const [k, w] of KIND_WEIGHTS) { acc += w; if (r < acc) return k; }
  return VEHICLE_KINDS[0];
}

export function buildFleetEntities(o: SetupOptions): FleetSetup {
  const rng = createRng(o.seed);
  const area = o.bbox ? o.bbox.join(',') : o.city;
  const prefix = o.prefix ?? (o.bbox ? 'sim' : o.city);
  const wantTrace = o.source === 'trace' || (!o.source && !o.bbox && o.city === 'dublin');
  if (wantTrace) {
    const traces = loadDublinTraces(join(o.dataDir, 'dublin-bus'));
    if (traces) {
      const now = Date.now();
      const buses = traces.slice(0, o.vehicles).map((t, i) => {
        const interval = o.intervalMs[0] + ((o.intervalMs[1] - o.intervalMs[0]) * ((i * 37) % 100)) / 100;
        return new TraceVehicle(`${prefix}-bus-${t.vehicle}`, t, o.speedup, now + (i % 20) * 150, interval);
      });
      // A finished bus restarts after its live entry expired (so the jump back is a new appearance).
      const doneAt = new Map<TraceVehicle, number>();
      return {
        source: 'trace', area: 'dublin', attribution: DUBLIN_ATTRIBUTION, entities: buses,
        onTick(n) {
          for (const b of buses) {
            if (!b.done) continue;
            const at = doneAt.get(b) ?? n;
            doneAt.set(b, at);
            if (n - at > 90_000) { doneAt.delete(b); b.restart(n); }
          }
        },
      };
    }
    if (o.source === 'trace') throw new Error(`--source trace: no ${join(o.dataDir, 'dublin-bus')} data`);
  }
  let graph: RoadGraph | undefined;
  let source: SimSource = 'grid';
  if ((o.source === 'roads' || !o.source) && !o.bbox && o.city === 'porto') {
    const dir = join(o.dataDir, 'porto-roads');
    graph = existsSync(dir) ? loadPortoRoads(dir) : undefined;
    if (graph) source = 'roads';
    else if (o.source === 'roads') throw new Error(`--source roads: no ${dir} data`);
  }
  if (!graph) {
    const bbox = o.bbox ?? CITIES[o.city];
    if (!bbox) throw new Error(`unknown city ${o.city}; known: ${Object.keys(CITIES).join(', ')} (or give --bbox)`);
    graph = syntheticGrid(bbox);
  }
  const now = Date.now();
  const opts = { ...DEFAULT_VEHICLE_OPTIONS, minIntervalMs: o.intervalMs[0], maxIntervalMs: o.intervalMs[1], meanOnlineSeconds: o.meanOnlineSeconds, offlineSeconds: o.offlineSeconds };
  const entities: SimEntity[] = [];
  for (let i = 0; i < o.vehicles; i++) {
    const kind = pickKind(rng.next());
    const id = `${prefix}-${kind}-${String(i + 1).padStart(4, '0')}`;
    entities.push(new SimVehicle(id, kind, new RoadWalker(graph, createRng(o.seed * 7919 + i)), createRng(o.seed * 104729 + i), opts, now));
  }
  return { source, area, attribution: graph.attribution, entities };
}

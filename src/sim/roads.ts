/**
 * Road graphs the simulator drives on: the Porto network (OpenStreetMap, ODbL, in the LibCity
 * format of ../shared/data/porto-roads/) or, when that data is absent or another city is asked
 * for, a synthetic street grid over a bbox that behaves like roads (blocks, junctions, arterials).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { haversineMeters, type BBox } from '../geo/tiles.js';

export interface Segment {
  id: number;
  /** [lon, lat] points. */
  coords: [number, number][];
  /** Cumulative length (m) at each point; cum[last] = length. */
  cum: number[];
  length: number;
  /** Speed limit in m/s (from maxspeed, else from the road class). */
  limit: number;
}

/** A way to leave a junction: a segment and the direction it is driven in. */
export interface Exit { seg: number; forward: boolean }

export interface RoadGraph {
  name: string;
  segments: Segment[];
  /** Directed continuations from the end of each segment (porto_roadmap_edge.rel). */
  next: number[][];
  /** Every segment touching a junction, by junction key. */
  junctions: Map<string, Exit[]>;
  bbox: BBox;
  attribution: string;
}

export const PORTO_BBOX: BBox = [-8.689, 41.14, -8.556, 41.186];
export const OSM_ATTRIBUTION = '© OpenStreetMap contributors (ODbL)';

/**
 * The LibCity export encodes `maxspeed` as a small class number (0 = unknown, 5 the most common
 * in the city): read as tens of km/h (5 → 50 km/h, 8 → 80 km/h), floored at 20 km/h. Unknown → 40 km/h.
 */
function limitFromCode(code: number): number {
  if (!(code > 0)) return 40 / 3.6;
  return Math.max(20, Math.min(120, code * 10)) / 3.6;
}

export function junctionKey(p: readonly [number, number]): string {
  return `${p[0].toFixed(6)},${p[1].toFixed(6)}`;
}

function makeSegment(id: number, coords: [number, number][], limit: number): Segment {
  const cum = [0];
  for (let i = 1; i < coords.length; i++) {
    cum.push(cum[i - 1]! + haversineMeters(coords[i - 1]![1], coords[i - 1]![0], coords[i]![1], coords[i]![0]));
  }
  return { id, coords, cum, length: cum[cum.length - 1]!, limit };
}

function indexJunctions(segments: Segment[]): Map<string, Exit[]> {
  const j = new Map<string, Exit[]>();
  const add = (k: string, e: Exit): void => {
    let l = j.get(k);
    if (!l) j.set(k, (l = []));
    l.push(e);
  };
  for (const s of segments) {
    add(junctionKey(s.coords[0]!), { seg: s.id, forward: true });
    add(junctionKey(s.coords[s.coords.length - 1]!), { seg: s.id, forward: false });
  }
  return j;
}

/** Splits one CSV line with double-quoted fields (the coordinates column holds commas). */
function splitCsv(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '"') quoted = !quoted;
    else if (c === ',' && !quoted) { out.push(cur); cur = ''; }
    else cur += c;
  }
  out.push(cur);
  return out;
}

/** Loads porto_roads.csv + porto_roadmap_edge.rel from `dir`; undefined when the files are absent. */
export function loadPortoRoads(dir: string): RoadGraph | undefined {
  const roadsFile = join(dir, 'porto_roads.csv');
  const relFile = join(dir, 'porto_roadmap_edge.rel');
  if (!existsSync(roadsFile) || !existsSync(relFile)) return undefined;
  const segments: Segment[] = [];
  const byGeoId = new Map<number, number>();
  const lines = readFileSync(roadsFile, 'utf8').split('\n');
  const head = splitCsv(lines[0]!.trim());
  const col = (n: string): number => head.indexOf(n);
  const [cId, cCoords, cMax] = [col('geo_id'), col('coordinates'), col('maxspeed')];
  let w = 180, s = 90, e = -180, n = -90;
  for (const line of lines.slice(1)) {
    if (!line.trim()) continue;
    const f = splitCsv(line.trim());
    const coords = JSON.parse(f[cCoords]!) as [number, number][];
    if (coords.length < 2) continue;
    const limit = limitFromCode(Number(f[cMax]));
    const seg = makeSegment(segments.length, coords, limit);
    if (seg.length < 1) continue;
    byGeoId.set(Number(f[cId]), seg.id);
    segments.push(seg);
    for (const [lon, lat] of coords) { w = Math.min(w, lon); e = Math.max(e, lon); s = Math.min(s, lat); n = Math.max(n, lat); }
  }
  const next: number[][] = segments.map(() => []);
  for (const line of readFileSync(relFile, 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(',');
    if (f.length < 4) continue;
    const from = byGeoId.get(Number(f[2])), to = byGeoId.get(Number(f[3]));
    if (from !== undefined && to !== undefined) next[from]!.push(to);
  }
  return { name: 'porto', segments, next, junctions: indexJunctions(segments), bbox: [w, s, e, n], attribution: OSM_ATTRIBUTION };
}

/**
 * A street grid over a bbox: blocks of about `blockMeters`, every 4th street an arterial
 * (50 km/h), the others 30 km/h, two-way. Used when no road data is there.
 */
export function syntheticGrid(bbox: BBox, blockMeters = 180, maxLines = 60): RoadGraph {
  const [w, s, e, n] = bbox;
  const midLat = (s + n) / 2;
  const mPerDegLat = 111_320;
  const mPerDegLon = 111_320 * Math.cos(midLat * Math.PI / 180);
  const cols = Math.max(2, Math.min(maxLines, Math.round(((e - w) * mPerDegLon) / blockMeters)));
  const rows = Math.max(2, Math.min(maxLines, Math.round(((n - s) * mPerDegLat) / blockMeters)));
  const lonAt = (i: number): number => w + ((e - w) * i) / cols;
  const latAt = (j: number): number => s + ((n - s) * j) / rows;
  const segments: Segment[] = [];
  const limitFor = (k: number): number => (k % 4 === 0 ? 50 / 3.6 : 30 / 3.6);
  for (let j = 0; j <= rows; j++) {
    for (let i = 0; i < cols; i++) segments.push(makeSegment(segments.length, [[lonAt(i), latAt(j)], [lonAt(i + 1), latAt(j)]], limitFor(j)));
  }
  for (let i = 0; i <= cols; i++) {
    for (let j = 0; j < rows; j++) segments.push(makeSegment(segments.length, [[lonAt(i), latAt(j)], [lonAt(i), latAt(j + 1)]], limitFor(i)));
  }
  const next: number[][] = segments.map(() => []);
  return { name: 'grid', segments, next, junctions: indexJunctions(segments), bbox, attribution: 'synthetic street grid' };
}

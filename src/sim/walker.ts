/** Moves one vehicle along a road graph: continuous position, junction choices, heading. */
import type { Exit, RoadGraph } from './roads.js';
import { junctionKey } from './roads.js';
import type { Rng } from './rng.js';

export interface Fix { lat: number; lon: number; heading: number }

export class RoadWalker {
  private seg: number;
  private forward: boolean;
  /** Metres driven along the current segment, from its entry end. */
  private along: number;
  /** Metres driven since the start (tests and odometers). */
  odometer = 0;

  constructor(private readonly graph: RoadGraph, private readonly rng: Rng, start?: Exit) {
    const s = start ?? { seg: rng.int(graph.segments.length), forward: rng.chance(0.5) };
    this.seg = s.seg;
    this.forward = s.forward;
    this.along = rng.range(0, graph.segments[s.seg]!.length);
  }

  /** Speed limit (m/s) of the road the vehicle is on. */
  get limit(): number {
    return this.graph.segments[this.seg]!.limit;
  }

  get segment(): number {
    return this.seg;
  }

  /** Drives `meters` further, taking a plausible exit at each junction. */
  advance(meters: number): void {
    let left = Math.max(0, meters);
    this.odometer += left;
    for (let guard = 0; guard < 1000 && left > 0; guard++) {
      const len = this.graph.segments[this.seg]!.length;
      if (this.along + left < len) {
        this.along += left;
        return;
      }
      left -= len - this.along;
      this.enter(this.chooseExit());
    }
  }

  private enter(e: Exit): void {
    this.seg = e.seg;
    this.forward = e.forward;
    this.along = 0;
  }

  private chooseExit(): Exit {
    const s = this.graph.segments[this.seg]!;
    if (this.forward) {
      const cont = this.graph.next[this.seg]!;
      if (cont.length > 0) return { seg: this.rng.pick(cont), forward: true };
    }
    const end = this.forward ? s.coords[s.coords.length - 1]! : s.coords[0]!;
    const exits = (this.graph.junctions.get(junctionKey(end)) ?? []).filter((x) => x.seg !== this.seg);
    if (exits.length > 0) return this.rng.pick(exits);
    return { seg: this.seg, forward: !this.forward }; // dead end: turn around
  }

  /** Where the vehicle is now. */
  fix(): Fix {
    const s = this.graph.segments[this.seg]!;
    const d = this.forward ? this.along : s.length - this.along;
    let i = 1;
    while (i < s.cum.length - 1 && s.cum[i]! < d) i++;
    const a = s.coords[i - 1]!, b = s.coords[i]!;
    const span = s.cum[i]! - s.cum[i - 1]!;
    const t = span > 0 ? Math.min(1, Math.max(0, (d - s.cum[i - 1]!) / span)) : 0;
    const lon = a[0] + (b[0] - a[0]) * t;
    const lat = a[1] + (b[1] - a[1]) * t;
    const [from, to] = this.forward ? [a, b] : [b, a];
    return { lat, lon, heading: bearing(from[1], from[0], to[1], to[0]) };
  }
}

/** Initial bearing in degrees [0, 360). */
export function bearing(lat1: number, lon1: number, lat2: number, lon2: number): number {
  const r = Math.PI / 180;
  const y = Math.sin((lon2 - lon1) * r) * Math.cos(lat2 * r);
  const x = Math.cos(lat1 * r) * Math.sin(lat2 * r) - Math.sin(lat1 * r) * Math.cos(lat2 * r) * Math.cos((lon2 - lon1) * r);
  const deg = Math.atan2(y, x) / r;
  return Math.round(((deg % 360) + 360) % 360 * 10) / 10 % 360;
}

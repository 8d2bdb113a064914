/**
 * Shared map-viewer load: many MapClients (socket.io) subscribed to tiles, counting updates and
 * delay; optionally some of them sinks (lib/sink-viewer.ts) that only count their frames.
 */
import { MapClient } from '../../src/clients/map-client.js';
import { benchToken } from './drivers.js';
import { Latency } from './hist.js';
import { progress } from './report.js';
import { SinkViewer } from './sink-viewer.js';

/** A MapClient (decodes every update, records its delay) or a sink (`sink` set: counts frames only, in `sink.frames`). */
export interface Viewer { client: { close(): Promise<void> }; tile: string; updates: number; frames: number; sink?: SinkViewer }

export interface ViewerStats {
  viewers: Viewer[]; failed: number; firstError?: string;
  /** Delay per gateway (index of `urls`); viewerDelay() merges them. MapClients only. */
  delayByGateway: Latency[];
  /** Entity updates and frames received by the MapClients while measuring. */
  updates: number; frames: number; measuring: boolean;
}

/** Frames a viewer received while measuring (a sink counts them itself). */
export const viewerFrames = (v: Viewer): number => (v.sink ? v.sink.frames : v.frames);

/** Starts or stops counting on every viewer (MapClients by `st.measuring`, sinks by their own flag). */
export function setMeasuring(st: ViewerStats, on: boolean): void {
  st.measuring = on;
  for (const v of st.viewers) if (v.sink) v.sink.counting = on;
}

/** All gateways' delays in one histogram. */
export function viewerDelay(st: Pick<ViewerStats, 'delayByGateway'>): Latency {
  const all = new Latency();
  for (const h of st.delayByGateway) all.addEncoded(h.encode());
  return all;
}

/**
 * Opens `n` viewers, viewer i on gateway urls[gatewayOf[i]] (default i % urls.length),
 * subscribed to tiles[i], a sink where sinkOf[i] (default none). Delays are recorded per gateway index.
 */
export async function openViewers(urls: string[], tiles: string[], o: { concurrency?: number; deadlineMs?: number; gatewayOf?: number[]; sinkOf?: boolean[] } = {}): Promise<ViewerStats> {
  const st: ViewerStats = { viewers: [], failed: 0, delayByGateway: urls.map(() => new Latency()), updates: 0, frames: 0, measuring: false };
  let next = 0;
  const deadline = Date.now() + (o.deadlineMs ?? 120_000);
  let lastLog = Date.now();
  const worker = async (): Promise<void> => {
    while (next < tiles.length && Date.now() < deadline) {
      const i = next++;
      try {
        const token = await benchToken(`viewer-${i}`, ['subscribe']);
        const g = o.gatewayOf?.[i] ?? i % urls.length;
        st.viewers.push(o.sinkOf?.[i] ? await openSinkViewer(urls[g]!, token, tiles[i]!) : await openMapViewer(urls[g]!, token, tiles[i]!, st, st.delayByGateway[g]!));
      } catch (err) {
        st.failed++;
        st.firstError ??= (err as Error).message;
        if (st.failed > Math.min(50, Math.max(5, tiles.length * 0.05))) next = tiles.length;
      }
      if (Date.now() - lastLog > 3000) { lastLog = Date.now(); progress(`  viewers ${st.viewers.length}/${tiles.length} (${st.failed} failed)`); }
    }
  };
  await Promise.all(Array.from({ length: Math.min(o.concurrency ?? 32, tiles.length) }, worker));
  return st;
}

/** A sink subscribed to `tile` (counts its frames while its `counting` is on). */
async function openSinkViewer(url: string, token: string, tile: string): Promise<Viewer> {
  const sink = await SinkViewer.connect(url, token);
  const ack = await sink.subscribeTiles([tile]).catch(async (err: unknown) => { await sink.close(); throw err; });
  if (!ack.ok) { await sink.close(); throw new Error(`subscribe refused: ${ack.code} ${ack.message}`); }
  return { client: sink, tile, updates: 0, frames: 0, sink };
}

/** A MapClient subscribed to `tile`, counting into `st` (while measuring) and recording delays into `delay`. */
async function openMapViewer(url: string, token: string, tile: string, st: ViewerStats, delay: Latency): Promise<Viewer> {
  const client = await MapClient.connect(url, token, { keepState: false, reconnect: false, connectTimeoutMs: 10_000, ackTimeoutMs: 10_000 });
  const v: Viewer = { client, tile, updates: 0, frames: 0 };
  client.on('update', (_tile, updates, receivedAt) => {
    if (!st.measuring) return;
    v.frames++;
    st.frames++;
    v.updates += updates.length;
    st.updates += updates.length;
    for (const u of updates) delay.record(receivedAt - u.ts);
  });
  const ack = await client.subscribeTiles([tile]);
  if (!ack.ok) { await client.close(); throw new Error(`subscribe refused: ${ack.code} ${ack.message}`); }
  return v;
}

export async function closeViewers(viewers: Viewer[]): Promise<void> {
  for (let i = 0; i < viewers.length; i += 500) {
    await Promise.all(viewers.slice(i, i + 500).map((v) => Promise.race([v.client.close().catch(() => undefined), new Promise((r) => setTimeout(r, 3000))])));
  }
}

/** Viewers that got no frame while another viewer of the same tile got some (frames counted while measuring). */
export function starved(viewers: readonly { tile: string; frames: number }[]): { starved: number; activeTiles: number; minPerActive: number; medianPerViewer: number } {
  const byTile = new Map<string, { tile: string; frames: number }[]>();
  for (const v of viewers) { const l = byTile.get(v.tile) ?? []; l.push(v); byTile.set(v.tile, l); }
  let count = 0;
  let active = 0;
  let min = Infinity;
  for (const list of byTile.values()) {
    if (!list.some((v) => v.frames > 0)) continue;
    active++;
    for (const v of list) { if (v.frames === 0) count++; min = Math.min(min, v.frames); }
  }
  const sorted = viewers.map((v) => v.frames).sort((a, b) => a - b);
  return { starved: count, activeTiles: active, minPerActive: Number.isFinite(min) ? min : 0, medianPerViewer: sorted[Math.floor(sorted.length / 2)] ?? 0 };
}

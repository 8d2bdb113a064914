/** Shared map-viewer load: many MapClients (socket.io) subscribed to tiles, counting updates and delay. */
import { MapClient } from '../../src/clients/map-client.js';
import { benchToken } from './drivers.js';
import { Latency } from './hist.js';
import { progress } from './report.js';

export interface Viewer { client: MapClient; tile: string; updates: number; frames: number }

export interface ViewerStats {
  viewers: Viewer[]; failed: number; firstError?: string;
  /** Delay per gateway (index of `urls`); viewerDelay() merges them. */
  delayByGateway: Latency[];
  updates: number; frames: number; measuring: boolean;
}

/** All gateways' delays in one histogram. */
export function viewerDelay(st: Pick<ViewerStats, 'delayByGateway'>): Latency {
  const all = new Latency();
  for (const h of st.delayByGateway) all.addEncoded(h.encode());
  return all;
}

/**
 * Opens `n` viewers, viewer i on gateway urls[gatewayOf[i]] (default i % urls.length),
 * subscribed to tiles[i]. Delays are recorded per gateway index.
 */
export async function openViewers(urls: string[], tiles: string[], o: { concurrency?: number; deadlineMs?: number; gatewayOf?: number[] } = {}): Promise<ViewerStats> {
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
        const gwDelay = st.delayByGateway[g]!;
        const client = await MapClient.connect(urls[g]!, token, { keepState: false, reconnect: false, connectTimeoutMs: 10_000, ackTimeoutMs: 10_000 });
        const v: Viewer = { client, tile: tiles[i]!, updates: 0, frames: 0 };
        client.on('update', (_tile, updates, receivedAt) => {
          if (!st.measuring) return;
          v.frames++;
          st.frames++;
          v.updates += updates.length;
          st.updates += updates.length;
          for (const u of updates) gwDelay.record(receivedAt - u.ts);
        });
        const ack = await client.subscribeTiles([v.tile]);
        if (!ack.ok) throw new Error(`subscribe refused: ${ack.code} ${ack.message}`);
        st.viewers.push(v);
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

export async function closeViewers(viewers: Viewer[]): Promise<void> {
  for (let i = 0; i < viewers.length; i += 500) {
    await Promise.all(viewers.slice(i, i + 500).map((v) => Promise.race([v.client.close().catch(() => undefined), new Promise((r) => setTimeout(r, 3000))])));
  }
}

/** Viewers that got nothing while another viewer of the same tile got updates. */
export function starved(viewers: readonly { tile: string; updates: number }[]): { starved: number; activeTiles: number; minPerActive: number; medianPerViewer: number } {
  const byTile = new Map<string, { tile: string; updates: number }[]>();
  for (const v of viewers) { const l = byTile.get(v.tile) ?? []; l.push(v); byTile.set(v.tile, l); }
  let count = 0;
  let active = 0;
  let min = Infinity;
  for (const list of byTile.values()) {
    if (!list.some((v) => v.updates > 0)) continue;
    active++;
    for (const v of list) { if (v.updates === 0) count++; min = Math.min(min, v.updates); }
  }
  const sorted = viewers.map((v) => v.updates).sort((a, b) => a - b);
  return { starved: count, activeTiles: active, minPerActive: Number.isFinite(min) ? min : 0, medianPerViewer: sorted[Math.floor(sorted.length / 2)] ?? 0 };
}

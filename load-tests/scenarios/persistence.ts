/**
 * Persistence: steady ingest through a gateway while worker process(es) flush to PostGIS, in
 * window mode (one row per entity per 10 s window) and raw mode (every ping). A fresh database
 * per mode. Reports rows/s and pings consumed/s per worker, and the lag distribution: for
 * tracer entities, the time from a ping's ts until a row with that fix (or a newer one of the
 * same entity) is in `positions` (polled through the primary key, every 250 ms).
 */
import pg from 'pg';
import type { ScenarioContext } from '../lib/context.js';
import { cleanRedis, scenarioPrefix, sleep } from '../lib/context.js';
import { BENCH_TENANT, closeDrivers, openDrivers, sendAtRate } from '../lib/drivers.js';
import { Latency, p99Under, round } from '../lib/hist.js';
import { MB, procSample } from '../lib/proc-stat.js';
import { progress, type ScenarioResult } from '../lib/report.js';
import { freePort, startBenchGateway, startBenchWorker, type NodeChild } from '../lib/stack.js';

const TRACERS = 20;

async function freshDatabase(url: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `gfbench_${Math.random().toString(36).slice(2, 8)}`;
  const admin = (db: string): string => { const u = new URL(url); u.pathname = `/${db}`; return u.toString(); };
  const c = new pg.Client({ connectionString: admin('postgres') });
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  return {
    url: admin(name),
    async drop() {
      const d = new pg.Client({ connectionString: admin('postgres') });
      await d.connect();
      await d.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await d.end();
    },
  };
}

export async function runPersistence(ctx: ScenarioContext, mode: 'window' | 'raw'): Promise<ScenarioResult> {
  const o = ctx.opts;
  const rate = o.rate || (o.smoke ? 4000 : mode === 'raw' ? 30_000 : 50_000);
  const drivers = o.drivers || (o.smoke ? 100 : 1000);
  const flushMs = o.smoke ? 2000 : 10_000;
  const workers = o.workers; // steady phase; the drain phase measures one worker process
  await cleanRedis(ctx.stack.redisUrl);
  const db = await freshDatabase(ctx.stack.databaseUrl);
  const stack = { ...ctx.stack, databaseUrl: db.url };
  const metricsPort = await freePort();
  const env = { stack, keyPrefix: scenarioPrefix(`persist-${mode}`), extra: { PERSIST_MODE: mode, FLUSH_INTERVAL_MS: String(flushMs), WORKER_METRICS_PORT: String(metricsPort) } };
  // The worker's own lag gauge (geoflux_worker_persistence_lag_seconds), scraped alongside, as a cross-check.
  const workerLag = new Latency();
  const scrapeLag = async (): Promise<void> => {
    try {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(1000) });
      const m = /^geoflux_worker_persistence_lag_seconds(?:\{[^}]*\})? ([\d.eE+-]+)$/m.exec(await res.text());
      if (m) workerLag.record(Number(m[1]) * 1000);
    } catch { /* no metrics listener in this worker version */ }
  };
  const gw = await startBenchGateway(env);
  const ws: NodeChild[] = [];
  const c = new pg.Client({ connectionString: db.url });
  try {
    // Only worker-0 serves /metrics (the lag gauge inspects every stream, so one worker's gauge is the cluster's).
    for (let i = 0; i < workers; i++) ws.push(await startBenchWorker(i === 0 ? env : { ...env, extra: { ...env.extra, WORKER_METRICS_PORT: '0' } }, `worker-${i}`));
    await c.connect();
    const opened = await openDrivers(gw.url, drivers, { prefix: `pw${mode[0]}`, encoding: 'msgpack', concurrency: 128 });
    const tracerIds = opened.vehicles.slice(0, TRACERS).map((v) => v.id);
    const sentTs = new Map<string, number[]>(tracerIds.map((id) => [id, []]));
    const lag = new Latency();
    let polling = true;
    let lastSeen = new Map<string, number>();
    const poll = async (): Promise<void> => {
      while (polling) {
        const now = Date.now();
        try {
          const r = await c.query<{ entity_id: string; m: Date }>('SELECT entity_id, max(ts) AS m FROM positions WHERE tenant = $1 AND entity_id = ANY($2) GROUP BY entity_id', [BENCH_TENANT, tracerIds]);
          lastSeen = new Map(r.rows.map((x) => [x.entity_id, x.m.getTime()]));
          for (const [id, q] of sentTs) {
            const m = lastSeen.get(id) ?? 0;
            let k = 0;
            while (k < q.length && q[k]! <= m) { lag.record(now - q[k]!); k++; }
            if (k) q.splice(0, k);
          }
        } catch (err) {
          progress(`persistence poll failed: ${(err as Error).message}`);
        }
        if (ws[0]?.name === 'worker-0') await scrapeLag();
        await sleep(250);
      }
    };
    const w0 = ws.map((w) => procSample(w.pid).cpuSeconds);
    const t0 = performance.now();
    const poller = poll();
    progress(`persistence (${mode}): ${rate} pings/s, ${opened.clients.length} drivers, flush every ${flushMs} ms, ${o.duration}s`);
    const s = await sendAtRate(opened.clients, opened.vehicles, {
      rate, batch: o.batch, seconds: o.smoke ? Math.min(o.duration, 4) : o.duration, label: `persist-${mode}`,
      onPing: (i, p) => { if (i < TRACERS) sentTs.get(p.id)?.push(p.ts); },
    });
    // Wait (bounded) until every tracer ping is persisted: the workers caught up.
    const waitCaughtUp = async (maxMs: number): Promise<number> => {
      const deadline = Date.now() + maxMs;
      while (Date.now() < deadline && [...sentTs.values()].some((q) => q.length > 0)) await sleep(250);
      return [...sentTs.values()].reduce((a, q) => a + q.length, 0);
    };
    const unpersisted = await waitCaughtUp(o.smoke ? flushMs * 2 + 6000 : flushMs * 3 + 30_000);
    const caughtUpSecs = (performance.now() - t0) / 1000;
    const countRows = async (): Promise<number> => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM positions')).rows[0]!.n);
    const rows = await countRows();
    const w1 = ws.map((w) => procSample(w.pid));
    const workerCpu = w1.reduce((a, x, i) => a + x.cpuSeconds - w0[i]!, 0);
    const lagS = lag.summary();
    // Steady-phase flushes of every worker (pings, ms, start-to-start gap), for the report.
    const steadyFlushes = ws.flatMap((w) => w.logs.filter((l) => l.msg === 'flushed' && Number(l.read) > 0)
      .map((l) => ({ worker: w.name, at: Number(l.time), read: Number(l.read), ms: Number(l.ms), steps: l.steps as Record<string, number> | undefined })));
    const flushSummary = (list: typeof steadyFlushes): string => {
      if (!list.length) return 'none';
      const q = (xs: number[], f: number): number => { const a = [...xs].sort((x, y) => x - y); return a[Math.min(a.length - 1, Math.floor(f * a.length))]!; };
      const reads = list.map((f) => f.read);
      const mss = list.map((f) => f.ms);
      const stepKeys = [...new Set(list.flatMap((f) => Object.keys(f.steps ?? {})))];
      const meanStep = stepKeys.map((k) => `${k} ${Math.round(list.reduce((a, f) => a + (f.steps?.[k] ?? 0), 0) / list.length)}`).join(', ');
      return `${list.length} flushes, pings/flush p50 ${q(reads, 0.5)} max ${Math.max(...reads)}, write ms p50 ${q(mss, 0.5)} max ${Math.max(...mss)}, mean steps ms [${meanStep}]`;
    };

    // Drain phase: workers stopped, a backlog is ingested, one worker is started and timed
    // until it has persisted everything: the worker's own rate, not the offered one (flush
    // interval 1 s here, so waiting for the first flush costs little).
    for (const w of ws.splice(0)) await w.stop();
    const backlog = o.smoke ? 15_000 : 300_000;
    progress(`persistence (${mode}): drain phase, backlog ${backlog} pings`);
    const rowsBefore = rows;
    // Closed loop (at most 2 unacknowledged frames per socket), so the backlog goes in as fast
    // as the gateway takes it without overloading it.
    const b = await sendAtRate(opened.clients, opened.vehicles, {
      rate: 200_000, batch: Math.max(o.batch, 25), seconds: o.smoke ? 10 : 60, stopAfterPings: backlog, label: `persist-${mode} backlog`, maxInFlight: 2,
      onPing: (i, p) => { if (i < TRACERS) sentTs.get(p.id)?.push(p.ts); },
    });
    await closeDrivers(opened.clients);
    const drainWorker = await startBenchWorker({ ...env, extra: { ...env.extra, FLUSH_INTERVAL_MS: '1000' } }, 'worker-drain');
    const td = performance.now(); // from 'worker running': process start-up and migrations are not the worker's rate
    ws.push(drainWorker);
    const d0 = procSample(drainWorker.pid).cpuSeconds;
    const drainUnpersisted = await waitCaughtUp(o.smoke ? 12_000 : 90_000);
    // Tracers done; let the flush that carried them commit everything else, then count.
    let rowsAfter = await countRows();
    let doneAt = performance.now();
    for (let k = 0; k < 20; k++) {
      await sleep(250);
      const n = await countRows();
      if (n === rowsAfter) break;
      rowsAfter = n;
      doneAt = performance.now();
    }
    const drainSecs = (doneAt - td) / 1000;
    const drainCpu = procSample(drainWorker.pid).cpuSeconds - d0;
    polling = false;
    await poller;
    // The drain worker's own per-flush step timings (ms), for the report.
    const drainFlushes = drainWorker.logs.filter((l) => l.msg === 'flushed' && Number(l.read) > 0)
      .map((l) => ({ read: Number(l.read), ms: Number(l.ms), steps: l.steps as Record<string, number> | undefined }));
    const rowsPerSec = (rowsAfter - rowsBefore) / drainSecs;
    const pingsPerSec = b.pingsAccepted / drainSecs;
    const ratios: Record<string, number> = {};
    if (ctx.ceilings.pgCopyRowsPerSec && mode === 'raw') ratios['COPY rows'] = round(rowsPerSec / ctx.ceilings.pgCopyRowsPerSec, 4);
    const lagP99 = p99Under(15_000, lagS);
    const targets: ScenarioResult['targets'] = mode === 'raw'
      ? { 'raw >= 50% of COPY': { target: '>= 0.5', value: ratios['COPY rows'] ?? '-', ok: (ratios['COPY rows'] ?? 0) >= 0.5 } }
      : {
        // No tracer lag measured is a miss too (p99Under), as is a tracer never persisted.
        'lag p99': { ...lagP99, ok: lagP99.ok && unpersisted === 0 },
        'keeps up': { target: `>= ${rate} pings/s consumed`, value: Math.round(pingsPerSec), ok: pingsPerSec >= rate },
      };
    return {
      scenario: `persistence-${mode}`,
      load: `${Math.round(s.pingsAccepted / s.seconds)} pings/s accepted (offered ${rate}) for ${round(s.seconds, 0)}s, ${workers} worker${workers > 1 ? 's' : ''}, flush ${flushMs} ms`,
      latency: lagS,
      latencyOf: "ping's ts → row visible in positions (ms), tracer entities",
      throughput: mode === 'raw'
        ? { value: Math.round(rowsPerSec), unit: 'rows/s per worker (drain)' }
        : { value: Math.round(pingsPerSec), unit: 'pings/s consumed per worker (drain)' },
      ratios,
      cpu: {
        'worker cores (steady)': round(workerCpu / caughtUpSecs, 2),
        'worker ms/1k pings (steady)': round((workerCpu * 1e6) / Math.max(1, s.pingsAccepted), 3),
        'worker cores (drain)': round(drainCpu / drainSecs, 2),
      },
      memory: { 'worker RSS MB': round(w1.reduce((a, x) => Math.max(a, x.rssBytes), 0) / MB, 1) },
      targets,
      notes: [
        `steady: ${s.pingsAccepted} pings -> ${rows} rows, caught up ${round(caughtUpSecs, 1)} s after start; drain: ${b.pingsAccepted} pings -> ${rowsAfter - rowsBefore} new rows${mode === 'window' ? ' (window rows that already existed are updated, not added)' : ''} in ${round(drainSecs, 1)} s = ${Math.round(pingsPerSec)} pings/s consumed per worker (Postgres CPU not included in worker cores)`,
        ...(workerLag.count ? [`the worker's own lag gauge (steady phase): p50 ${workerLag.summary().p50} ms, p99 ${workerLag.summary().p99} ms, max ${workerLag.summary().max} ms`] : []),
        `steady flushes: ${[...new Set(steadyFlushes.map((f) => f.worker))].map((n) => `${n}: ${flushSummary(steadyFlushes.filter((f) => f.worker === n))}`).join('; ') || 'none'}`,
        ...(drainFlushes.length ? [`drain flushes (pings, ms, steps ms): ${drainFlushes.map((f) => `${f.read} in ${f.ms} [${Object.entries(f.steps ?? {}).map(([k, v]) => `${k} ${v}`).join(', ')}]`).join('; ')}`] : []),
        ...(Object.keys(s.errorCodes).length ? [`steady ingest errors: ${JSON.stringify(s.errorCodes)}`] : []),
        ...(unpersisted ? [`${unpersisted} tracer pings not persisted by the deadline (steady phase)`] : []),
        ...(drainUnpersisted ? [`${drainUnpersisted} tracer pings not persisted by the deadline (drain phase)`] : []),
      ],
      extra: { steadyFlushes, workers, drainFlushes, workerLag: workerLag.count ? workerLag.summary() : undefined, rows, rowsAfter, pingsAccepted: s.pingsAccepted, backlogPings: b.pingsAccepted, drainSecs, pingsPerSec, caughtUpSecs, unpersisted, drainUnpersisted, mode, flushMs },
    };
  } finally {
    await c.end().catch(() => undefined);
    for (const w of ws) await w.stop();
    await gw.stop();
    await db.drop().catch((err: unknown) => progress(`drop database failed: ${(err as Error).message}`));
  }
}

export async function main(ctx: ScenarioContext): Promise<ScenarioResult[]> {
  const m = ctx.opts.persistMode;
  const modes: ('window' | 'raw')[] = m === 'both' ? ['window', 'raw'] : [m];
  const out: ScenarioResult[] = [];
  for (const mode of modes) {
    try {
      out.push(await runPersistence(ctx, mode));
    } catch (err) {
      progress(`persistence-${mode} failed: ${(err as Error).stack ?? String(err)}`);
      out.push({ scenario: `persistence-${mode}`, load: '-', error: (err as Error).message });
    }
  }
  return out;
}

/** Fixed-arrival-rate HTTP GETs (open loop, bounded in-flight) with latency histograms. */
import http from 'node:http';
import { Latency } from './hist.js';
import { progress } from './report.js';

export interface HttpLoadStats { sent: number; ok: number; failed: number; dropped: number; seconds: number; latency: Latency; statuses: Record<string, number>; bodyBytes: number }

export async function getAtRate(o: { base: string; rate: number; seconds: number; maxInFlight?: number; path: () => string; headers: Record<string, string>; label: string; onBody?: (body: string) => void }): Promise<HttpLoadStats> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const u = new URL(o.base);
  const s: HttpLoadStats = { sent: 0, ok: 0, failed: 0, dropped: 0, seconds: 0, latency: new Latency(), statuses: {}, bodyBytes: 0 };
  const maxInFlight = o.maxInFlight ?? 256;
  let inFlight = 0;
  const t0 = performance.now();
  const end = t0 + o.seconds * 1000;
  let due = 0;
  let lastProgress = t0;
  const one = (): void => {
    const started = performance.now();
    inFlight++;
    s.sent++;
    const req = http.request({ agent, host: u.hostname, port: u.port, path: o.path(), method: 'GET', headers: o.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => {
        inFlight--;
        s.latency.record(performance.now() - started);
        s.statuses[res.statusCode ?? 0] = (s.statuses[res.statusCode ?? 0] ?? 0) + 1;
        s.bodyBytes += body.length;
        if (res.statusCode === 200) { s.ok++; o.onBody?.(body); } else s.failed++;
      });
    });
    req.on('error', (err) => { inFlight--; s.failed++; s.statuses[err.message] = (s.statuses[err.message] ?? 0) + 1; });
    req.end();
  };
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      if (now >= end) { clearInterval(timer); resolve(); return; }
      const target = Math.floor(((now - t0) / 1000) * o.rate);
      while (due < target) {
        due++;
        if (inFlight >= maxInFlight) s.dropped++;
        else one();
      }
      if (now - lastProgress > 2000) {
        lastProgress = now;
        const sm = s.latency.summary();
        progress(`  ${o.label}: t=${((now - t0) / 1000).toFixed(0)}s ok ${s.ok} failed ${s.failed} dropped ${s.dropped} p50 ${sm.p50} p99 ${sm.p99} ms`);
      }
    }, 5);
  });
  s.seconds = (performance.now() - t0) / 1000;
  const deadline = Date.now() + 5000;
  while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  agent.destroy();
  return s;
}

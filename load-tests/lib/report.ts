/** Scenario results: the common shape, the summary table and the JSON result file. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LatencySummary } from './hist.js';

export interface ScenarioResult {
  scenario: string;
  /** Human description of the offered load, e.g. "200 sockets, 20000 pings/s, 25/frame". */
  load: string;
  /** Latency percentiles in ms (what the latency means is in `latencyOf`). */
  latency?: LatencySummary;
  latencyOf?: string;
  throughput?: { value: number; unit: string };
  /** Ratios to the machine's ceilings measured in the same run (0..1). */
  ratios?: Record<string, number>;
  cpu?: Record<string, number>;
  memory?: Record<string, number>;
  /** Pass/fail of the targets, by name. */
  targets?: Record<string, { target: string; value: number | string; ok: boolean }>;
  notes?: string[];
  extra?: Record<string, unknown>;
  error?: string;
}

export interface Ceilings {
  redisGeoaddP16?: number;
  redisXaddP16?: number;
  redisGeoaddP1?: number;
  uwsEchoMsgsPerSec?: number;
  pgCopyRowsPerSec?: number;
  notes?: string[];
}

export interface RunResult {
  startedAt: string;
  finishedAt: string;
  command: string;
  machine: { cpus: number; cpuModel: string; memGb: number; node: string; loadavgStart: number[]; loadavgEnd?: number[]; fdLimit: number };
  options: unknown;
  ceilings: Ceilings;
  results: ScenarioResult[];
}

const fmt = (x: number | undefined, d = 1): string => (x === undefined || !Number.isFinite(x) ? '-' : x >= 10000 ? Math.round(x).toLocaleString('en-US') : x.toFixed(d));

export function summaryTable(run: RunResult): string {
  const rows: string[][] = [['scenario', 'load', 'p50 ms', 'p99 ms', 'p999 ms', 'throughput', 'ratio to ceiling', 'cpu', 'memory', 'targets']];
  for (const r of run.results) {
    const ratios = Object.entries(r.ratios ?? {}).map(([k, v]) => `${k} ${(v * 100).toFixed(1)}%`).join('; ');
    const cpu = Object.entries(r.cpu ?? {}).map(([k, v]) => `${k} ${fmt(v, 2)}`).join('; ');
    const mem = Object.entries(r.memory ?? {}).map(([k, v]) => `${k} ${fmt(v, 1)}`).join('; ');
    const targets = Object.entries(r.targets ?? {}).map(([k, t]) => `${t.ok ? 'ok' : 'MISS'} ${k}`).join('; ');
    rows.push([
      r.scenario, r.error ? `ERROR: ${r.error.slice(0, 80)}` : r.load,
      fmt(r.latency?.p50, 2), fmt(r.latency?.p99, 2), fmt(r.latency?.p999, 2),
      r.throughput ? `${fmt(r.throughput.value, 0)} ${r.throughput.unit}` : '-',
      ratios || '-', cpu || '-', mem || '-', targets || '-',
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.min(60, Math.max(...rows.map((r) => (r[i] ?? '').length))));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
  const out = [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.slice(1).map(line)];
  const c = run.ceilings;
  out.push('', `ceilings: redis GEOADD -P16 ${fmt(c.redisGeoaddP16, 0)}/s, GEOADD -P1 ${fmt(c.redisGeoaddP1, 0)}/s, XADD -P16 ${fmt(c.redisXaddP16, 0)}/s, uWS echo ${fmt(c.uwsEchoMsgsPerSec, 0)} msg/s, PostGIS COPY ${fmt(c.pgCopyRowsPerSec, 0)} rows/s`);
  for (const r of run.results) for (const n of r.notes ?? []) out.push(`note [${r.scenario}]: ${n}`);
  return out.join('\n');
}

export function writeResult(path: string, run: RunResult): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(run, null, 2) + '\n');
}

/** Progress lines go to stderr so stdout carries only the table. */
export function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

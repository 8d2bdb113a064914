/**
 * Prints the Markdown results table of one or more bench JSON results (for docs/benchmarks.md):
 *   node dist/load-tests/report-md.js load-tests/results/<file>.json [...]
 */
import { readFileSync } from 'node:fs';
import type { RunResult } from './lib/report.js';

const fmt = (x: number | undefined, d = 1): string => (x === undefined || !Number.isFinite(x) ? '–' : x >= 10000 ? Math.round(x).toLocaleString('en-US') : String(Math.round(x * 10 ** d) / 10 ** d));
const kv = (o: Record<string, number> | undefined, pct = false): string =>
  Object.entries(o ?? {}).map(([k, v]) => `${k} ${pct ? `${fmt(v * 100, 1)}%` : fmt(v, 2)}`).join('; ') || '–';

for (const file of process.argv.slice(2)) {
  const run = JSON.parse(readFileSync(file, 'utf8')) as RunResult;
  const c = run.ceilings;
  const out: string[] = [
    `Run ${run.startedAt} → ${run.finishedAt}, \`${run.command}\`, ${run.machine.cpus} × ${run.machine.cpuModel}, Node ${run.machine.node}, load average at start ${run.machine.loadavgStart.join(' / ')}, at end ${run.machine.loadavgEnd?.join(' / ') ?? '–'} (file \`${file.replace(/^.*load-tests\//, 'load-tests/')}\`).`,
    '',
    `Ceilings in the same run: redis-benchmark GEOADD -P16 **${fmt(c.redisGeoaddP16, 0)}/s** (unpipelined ${fmt(c.redisGeoaddP1, 0)}/s), XADD -P16 **${fmt(c.redisXaddP16, 0)}/s**, uWS echo **${fmt(c.uwsEchoMsgsPerSec, 0)} msg/s**, PostGIS COPY **${fmt(c.pgCopyRowsPerSec, 0)} rows/s**.`,
    '',
    '| scenario | load | p50 ms | p99 ms | p999 ms | throughput | ratio to ceiling | CPU | memory | targets |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of run.results) {
    const targets = Object.entries(r.targets ?? {}).map(([k, t]) => `${t.ok ? '✅' : '❌'} ${k} (${t.value} vs ${t.target})`).join('<br>') || '–';
    out.push(`| ${r.scenario} | ${r.error ? `ERROR: ${r.error}` : r.load} | ${fmt(r.latency?.p50, 2)} | ${fmt(r.latency?.p99, 2)} | ${fmt(r.latency?.p999, 2)} | ${r.throughput ? `${fmt(r.throughput.value, 0)} ${r.throughput.unit}` : '–'} | ${kv(r.ratios, true)} | ${kv(r.cpu)} | ${kv(r.memory)} | ${targets} |`);
  }
  out.push('', 'Latency columns: ' + run.results.filter((r) => r.latencyOf).map((r) => `${r.scenario} = ${r.latencyOf}`).join('; ') + '.');
  const notes = run.results.flatMap((r) => (r.notes ?? []).map((n) => `- ${r.scenario}: ${n}`));
  if (notes.length) out.push('', ...notes);
  process.stdout.write(out.join('\n') + '\n\n');
}

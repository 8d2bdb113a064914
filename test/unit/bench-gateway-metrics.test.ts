import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bucketQuantile, histogramBuckets } from '../../load-tests/lib/gateway-metrics.js';

const TEXT = [
  '# HELP geoflux_room_ping_to_frame_seconds …',
  'geoflux_room_ping_to_frame_seconds_bucket{le="0.01"} 10',
  'geoflux_room_ping_to_frame_seconds_bucket{le="0.02"} 60',
  'geoflux_room_ping_to_frame_seconds_bucket{le="0.04"} 99',
  'geoflux_room_ping_to_frame_seconds_bucket{le="+Inf"} 100',
  'geoflux_room_ping_to_frame_seconds_sum 2',
  'geoflux_room_ping_to_frame_seconds_count 100',
].join('\n');

test('histogram buckets from /metrics text, and quantiles between two scrapes as histogram_quantile gives them', () => {
  const after = histogramBuckets(TEXT, 'geoflux_room_ping_to_frame_seconds');
  assert.deepEqual([...after], [[0.01, 10], [0.02, 60], [0.04, 99], [Infinity, 100]]);
  const none = new Map<number, number>();
  assert.ok(Math.abs(bucketQuantile(none, after, 0.5) - 0.018) < 1e-12, 'interpolated inside its bucket');
  assert.ok(Math.abs(bucketQuantile(none, after, 0.99) - 0.04) < 1e-12);
  assert.equal(bucketQuantile(none, after, 0.999), 0.04, 'in +Inf: the highest finite bound');
  const before = new Map([[0.01, 10], [0.02, 10], [0.04, 10], [Infinity, 10]]);
  assert.ok(Math.abs(bucketQuantile(before, after, 0.5) - (0.01 + 0.01 * (45 / 50))) < 1e-12, 'only what came between the scrapes');
  assert.ok(Number.isNaN(bucketQuantile(after, after, 0.5)), 'nothing observed in between');
});

test('processStats: CPU, RSS and the main thread\'s wait for a core from a gateway\'s /metrics (--target)', async () => {
  const { createServer } = await import('node:http');
  const { processStats } = await import('../../load-tests/lib/gateway-metrics.js');
  let body = 'geoflux_process_cpu_seconds_total 12.5\ngeoflux_process_resident_memory_bytes 1048576\ngeoflux_process_cpu_wait_seconds_total 0.75\n';
  const server = createServer((_req, res) => { res.end(body); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  try {
    assert.deepEqual(await processStats(url), { cpuSeconds: 12.5, rssBytes: 1048576, cpuWaitSeconds: 0.75 });
    body = 'geoflux_process_cpu_seconds_total 1\ngeoflux_process_resident_memory_bytes 2\n';
    assert.deepEqual(await processStats(url), { cpuSeconds: 1, rssBytes: 2 }, 'an older gateway without the wait metric: left out');
  } finally {
    server.close();
  }
});

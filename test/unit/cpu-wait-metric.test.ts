/** geoflux_process_cpu_wait_seconds_total: the event loop's time queued for a CPU (src/lifecycle/cpu-wait-metric.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { register } from 'prom-client';
import { mainThreadCpuWaitSeconds, registerCpuWaitMetric } from '../../src/lifecycle/cpu-wait-metric.js';

const linux = existsSync('/proc/self/schedstat');

test('on Linux: a counter that starts near 0 and grows while the machine is busier than its cores', { skip: linux ? false : 'no /proc/self/schedstat here' }, async () => {
  assert.ok((mainThreadCpuWaitSeconds() ?? -1) >= 0);
  registerCpuWaitMetric('t1_');
  registerCpuWaitMetric('t1_'); // once per prefix: a second call must not throw a duplicate-name error
  const value = async (): Promise<number> => {
    const m = /^t1_process_cpu_wait_seconds_total (\S+)$/m.exec(await register.metrics());
    assert.ok(m, 'the metric is exposed');
    return Number(m[1]);
  };
  const v0 = await value();
  assert.ok(v0 >= 0 && v0 < 60, String(v0));
  // More busy threads than cores: the main thread, spinning too, must wait for one at times.
  const n = Math.max(2, (await import('node:os')).cpus().length * 2);
  const spin = 'const end = Date.now() + 600; while (Date.now() < end) {}';
  const workers = Array.from({ length: n }, () => new Worker(spin, { eval: true }));
  const end = Date.now() + 600;
  while (Date.now() < end) { /* spin */ }
  await Promise.all(workers.map((w) => new Promise((r) => w.once('exit', r))));
  const v1 = await value();
  assert.ok(v1 > v0, `queued time grew: ${v0} -> ${v1}`);
});

/** `npm run bench` options: --target (fanout against gateways running elsewhere). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBenchArgs } from '../../load-tests/lib/args.js';

test('--target: fanout only, base URLs, no ceilings; --target-redis needs it', () => {
  const o = parseBenchArgs(['--scenario', 'fanout', '--target', 'http://10.0.0.5:8080/, http://10.0.0.6:8080', '--target-redis', 'redis://10.0.0.7:6379']);
  assert.deepEqual(o.targetGateways, ['http://10.0.0.5:8080', 'http://10.0.0.6:8080']);
  assert.equal(o.targetRedis, 'redis://10.0.0.7:6379');
  assert.equal(o.skipCeilings, true, 'the ceilings would measure this machine, not the target');
  assert.throws(() => parseBenchArgs(['--target', 'http://10.0.0.5:8080']), /fanout scenario only/);
  assert.throws(() => parseBenchArgs(['--scenario', 'fanout,ingest', '--target', 'http://10.0.0.5:8080']), /fanout scenario only/);
  assert.throws(() => parseBenchArgs(['--scenario', 'fanout', '--target', '10.0.0.5:8080']), /not a gateway base URL/);
  assert.throws(() => parseBenchArgs(['--scenario', 'fanout', '--target', 'http://h:1/socket.io']), /not a gateway base URL/);
  assert.throws(() => parseBenchArgs(['--scenario', 'fanout', '--target-redis', 'redis://x']), /needs --target/);
  const local = parseBenchArgs(['--scenario', 'fanout']);
  assert.equal(local.targetGateways, undefined);
  assert.equal(local.skipCeilings, false);
});

test('--realtime: fanout only, and not with --target (nothing local to raise)', () => {
  assert.equal(parseBenchArgs(['--scenario', 'fanout']).realtime, false);
  assert.equal(parseBenchArgs(['--scenario', 'fanout', '--realtime']).realtime, true);
  assert.throws(() => parseBenchArgs(['--realtime']), /fanout scenario only/);
  assert.throws(() => parseBenchArgs(['--scenario', 'fanout,ingest', '--realtime']), /fanout scenario only/);
  assert.throws(() => parseBenchArgs(['--scenario', 'fanout', '--realtime', '--target', 'http://10.0.0.5:8080']), /not with --target/);
});

test('fanout: the offered load must be sent (≥ 97 % accepted) for the latency figures to stand', async () => {
  const { loadSent } = await import('../../load-tests/scenarios/fanout.js');
  assert.deepEqual(loadSent(10_001, 10_000), { target: '≥ 97 % accepted', value: '100 %', ok: true });
  assert.equal(loadSent(9_700, 10_000).ok, true);
  assert.deepEqual(loadSent(6_154, 10_000), { target: '≥ 97 % accepted', value: '61.5 %', ok: false });
  assert.equal(loadSent(0, 0).ok, false);
});

test('--driver-gateways: fanout drivers on the first n gateways (default 1)', () => {
  assert.equal(parseBenchArgs(['--scenario', 'fanout']).driverGateways, 1);
  assert.equal(parseBenchArgs(['--scenario', 'fanout', '--driver-gateways', '2']).driverGateways, 2);
  assert.equal(parseBenchArgs(['--scenario', 'fanout', '--driver-gateways', '0']).driverGateways, 1);
});

test('fanout warm-up: 1 s for short runs, duration/6 up to 5 s for long ones (not measured)', async () => {
  const { fanoutWarmupSeconds } = await import('../../load-tests/scenarios/fanout.js');
  assert.equal(fanoutWarmupSeconds(6), 1);
  assert.equal(fanoutWarmupSeconds(3), 1);
  assert.equal(fanoutWarmupSeconds(20), 3);
  assert.equal(fanoutWarmupSeconds(30), 5);
  assert.equal(fanoutWarmupSeconds(60), 5);
});

test('--sample n: that many MapClients, split evenly over the gateways and spread within each; the rest sinks', async () => {
  assert.equal(parseBenchArgs(['--scenario', 'fanout']).sample, 0, 'default: every subscriber is a MapClient');
  assert.equal(parseBenchArgs(['--scenario', 'fanout', '--sample', '200']).sample, 200);
  assert.throws(() => parseBenchArgs(['--scenario', 'fanout', '--sample', 'all']), /not a non-negative number/);
  const { isSampled } = await import('../../load-tests/lib/viewer-load.js');
  for (const [n, sampled, gateways] of [[1000, 200, 2], [200, 20, 2], [7, 3, 2], [10, 4, 3], [5, 5, 2], [5, 9, 2]] as const) {
    const picked = Array.from({ length: n }, (_, j) => j).filter((j) => isSampled(j, n, sampled, gateways));
    assert.equal(picked.length, Math.min(n, sampled), `${sampled} of ${n}`);
    const perGateway = Array.from({ length: gateways }, (_, g) => picked.filter((j) => j % gateways === g).length);
    assert.ok(Math.max(...perGateway) - Math.min(...perGateway) <= 1, `${sampled} of ${n} over ${gateways} gateways: ${perGateway.join('/')}`);
  }
  // Spread within a gateway's viewers: 100 of gateway 0's 500 are every 5th of them, not the first 100.
  const g0 = Array.from({ length: 1000 }, (_, j) => j).filter((j) => j % 2 === 0 && isSampled(j, 1000, 200, 2));
  assert.ok(g0[0]! < 10 && g0.at(-1)! > 990, `first ${g0[0]}, last ${g0.at(-1)}`);
});

test('--sinks native|node and --sink-read-ms: where the sinks run and how often native ones read', () => {
  const d = parseBenchArgs(['--scenario', 'fanout', '--sample', '200']);
  assert.equal(d.sinks, 'native', 'default: one native process');
  assert.equal(d.sinkReadMs, 0, 'default: each frame as it arrives');
  assert.equal(parseBenchArgs(['--sinks', 'node']).sinks, 'node');
  assert.equal(parseBenchArgs(['--sink-read-ms', '50']).sinkReadMs, 50);
  assert.throws(() => parseBenchArgs(['--sinks', 'rust']), /--sinks: native \| node/);
  assert.throws(() => parseBenchArgs(['--sink-read-ms', 'soon']), /not a non-negative number/);
});

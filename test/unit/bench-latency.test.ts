/**
 * The benchmark's latency histogram: whole milliseconds are counted in an array and folded into
 * the HdrHistogram when read; the figures must be those of recording every value directly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as hdr from 'hdr-histogram-js';
import { Latency, p99Under } from '../../load-tests/lib/hist.js';

test('whole-ms fast path gives the same summary as HdrHistogram alone', () => {
  const l = new Latency();
  const direct = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
  let seed = 7;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 50_000; i++) {
    // whole ms (fast path), fractions and values beyond the array (HdrHistogram directly), zero and negatives
    const v = i % 10 === 0 ? rnd() * 10 : i % 97 === 0 ? 70_000 + Math.floor(rnd() * 1000) : i % 131 === 0 ? -3 : Math.floor(rnd() * rnd() * 800);
    l.record(v);
    direct.recordValue(Math.max(1, Math.round(v * 1000)));
  }
  const s = l.summary();
  assert.equal(s.count, 50_000);
  assert.equal(s.count, direct.totalCount);
  for (const [p, got] of [[50, s.p50], [90, s.p90], [99, s.p99], [99.9, s.p999]] as const) {
    assert.equal(got, Math.round(direct.getValueAtPercentile(p) / 10) / 100, `p${p}`);
  }
  assert.equal(s.max, Math.round(direct.maxValue / 10) / 100);
});

test('encoded histograms carry the pending whole-ms counts to the parent', () => {
  const child = new Latency();
  for (let i = 0; i < 1000; i++) child.record(i % 40);
  const parent = new Latency();
  parent.record(5);
  parent.addEncoded(child.encode());
  assert.equal(parent.count, 1001);
  assert.equal(child.count, 1000, 'encoding does not lose or double the counts');
  child.record(3);
  assert.equal(child.count, 1001);
  child.reset();
  assert.equal(child.count, 0);
  child.record(12);
  assert.ok(Math.abs(child.summary().p50 - 12) <= 0.012, 'HdrHistogram precision: 3 significant digits');
});

test('a p99 target is missed when there were no samples (no traffic is not a pass)', () => {
  const l = new Latency();
  assert.deepEqual(p99Under(50, l.summary()), { target: '< 50 ms', value: 'no samples', ok: false });
  for (let i = 0; i < 100; i++) l.record(10);
  assert.equal(p99Under(50, l.summary()).ok, true);
  l.record(900); l.record(900);
  assert.equal(p99Under(50, l.summary()).ok, false);
});

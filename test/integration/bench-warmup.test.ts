import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNodeChild } from '../../load-tests/lib/stack.js';
import { openDrivers, sendAtRate } from '../../load-tests/lib/drivers.js';

// The fan-out benchmark warms up and measures in one unbroken stream (sendAtRate's
// warmupSeconds): the measured part starts once, counts only the frames sent after the
// warm-up, and its clock starts there. Against the bare ack server (no gateway, no Redis).
test('sendAtRate with a warm-up: pings flow on unbroken, only the measured part is counted', async () => {
  const srv = startNodeChild('ack-server', 'dist/load-tests/lib/ack-server.js', {});
  try {
    const port = Number((await srv.waitForLog((l) => l.msg === 'ack listening')).port);
    const opened = await openDrivers(`http://127.0.0.1:${port}`, 4, { prefix: 'wu', encoding: 'msgpack', fleet: 5 });
    assert.equal(opened.clients.length, 4);
    let starts = 0;
    let built = 0;
    let builtAtStart = -1;
    const s = await sendAtRate(opened.clients, opened.vehicles, {
      rate: 500, batch: 5, fleet: 5, seconds: 0.6, warmupSeconds: 0.6, label: 'warm-up test',
      onPing: () => { built++; },
      onMeasureStart: () => { starts++; builtAtStart = built; },
    });
    assert.equal(starts, 1, 'the measured part starts once');
    assert.ok(builtAtStart >= 150, `warm-up pings were sent before it (${builtAtStart})`);
    assert.equal(s.pingsSent, built - builtAtStart, 'only pings after the start are counted');
    assert.ok(s.seconds >= 0.55 && s.seconds < 2, `measured seconds ${s.seconds}`);
    assert.ok(s.framesSent >= 30 && s.framesSent <= 90, `${s.framesSent} frames at 100 frames/s for 0.6 s`);
    assert.equal(s.framesAcked, s.framesSent, 'every measured frame acked');
    assert.equal(s.ack.summary().count, s.framesAcked, 'ack latencies of measured frames only');
    for (const c of opened.clients) await c.close();
  } finally {
    await srv.stop();
  }
});

// A start-up stall leaves a backlog that the server then answers in a burst: the warm-up goes on
// until the acks of the last second come at the offered rate (±5 %), neither slower (stalled)
// nor faster (catching up), so neither is measured; and it ends anyway after warmupMaxExtraSeconds.
test('sendAtRate: the warm-up goes on until the acks keep pace with the offered rate, up to its cap', async () => {
  const run = async (name: string, o: { seconds: number; warmupMaxExtraSeconds?: number }) => {
    const srv = startNodeChild(name, 'dist/load-tests/lib/ack-server.js', { ACK_STALL_MS: '1500' });
    try {
      const port = Number((await srv.waitForLog((l) => l.msg === 'ack listening')).port);
      const opened = await openDrivers(`http://127.0.0.1:${port}`, 8, { prefix: name, encoding: 'msgpack', fleet: 5 });
      const s = await sendAtRate(opened.clients, opened.vehicles, { rate: 500, batch: 5, fleet: 5, warmupSeconds: 1, label: name, ...o });
      for (const c of opened.clients) await c.close();
      return s;
    } finally {
      await srv.stop();
    }
  };
  // Nothing acked until ≈ 1.5 s (below the rate), then a burst (above it) that stays in the last
  // second's window until ≈ 2.5 s.
  const s = await run('wb', { seconds: 0.5 });
  assert.ok(s.warmupSeconds >= 2.2 && s.warmupSeconds < 8, `warm-up went on through the stall and the catch-up: ${s.warmupSeconds} s`);
  assert.equal(s.warmupCapped, false);
  assert.ok(s.ack.summary().p99 < 500, `no backlog in the measured part: ack p99 ${s.ack.summary().p99} ms`);
  const c = await run('wc', { seconds: 0.3, warmupMaxExtraSeconds: 0.6 });
  assert.ok(c.warmupSeconds >= 1.6 && c.warmupSeconds < 1.9, `capped at 1 + 0.6 s: ${c.warmupSeconds} s`);
  assert.equal(c.warmupCapped, true, 'the burst at ≈ 1.5 s is inside the last second at 1.6 s');
});

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

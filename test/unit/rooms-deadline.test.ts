import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { atDeadline, MAX_TIMER_MS } from '../../src/rooms/deadline.js';

/** The token-expiry timer of map sockets: deadlines beyond setTimeout's 2^31-1 ms limit. */

test('a deadline 40 days away fires once, at the deadline (never early, never lost)', () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  const warnings: string[] = [];
  const onWarning = (w: Error): void => { warnings.push(w.name); };
  process.on('warning', onWarning);
  try {
    const day = 86_400_000;
    const deadline = Date.now() + 40 * day;
    let fired = 0;
    atDeadline(deadline, () => { fired++; });
    mock.timers.tick(MAX_TIMER_MS);
    assert.equal(fired, 0, 'not after the first chunk (~24.8 days)');
    mock.timers.tick(40 * day - MAX_TIMER_MS - 1);
    assert.equal(fired, 0, 'not 1 ms early');
    mock.timers.tick(1);
    assert.equal(fired, 1, 'at the deadline');
    mock.timers.tick(100 * day);
    assert.equal(fired, 1, 'once');
  } finally {
    process.off('warning', onWarning);
    mock.timers.reset();
  }
  assert.deepEqual(warnings, []);
});

test('chunks are re-armed with what is left; cancel stops it; a past deadline fires at once', async () => {
  const keepAlive = setTimeout(() => undefined, 5000); // the deadline's own timers are unref'd
  const t0 = Date.now();
  const at = await new Promise<number>((resolve) => { atDeadline(t0 + 150, () => resolve(Date.now()), 20); });
  assert.ok(at - t0 >= 150, `fired after ${at - t0} ms`);
  let fired = false;
  const d = atDeadline(Date.now() + 60, () => { fired = true; }, 20);
  await new Promise((r) => setTimeout(r, 30));
  d.cancel();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(fired, false);
  const late = await new Promise<boolean>((resolve) => {
    atDeadline(Date.now() - 1000, () => resolve(true));
    setTimeout(() => resolve(false), 50);
  });
  assert.equal(late, true);
  clearTimeout(keepAlive);
});

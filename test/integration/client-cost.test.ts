import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/load.js';

// The client-cost measurement (load-tests/client-cost.ts) must keep working: both clients get
// an ack for every frame they sent, and the CPU figures are there. No figure is judged here.
test('client-cost: the driver and the bare client each get one ack per frame', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [join(projectRoot(), 'dist/load-tests/client-cost.js'), '--conns', '20', '--rate', '400', '--seconds', '1'], { timeout: 60_000 });
  const rows = stdout.trim().split('\n').map((l) => JSON.parse(l) as { mode: string; frames: number; acked: number; userMicrosPerFrame: number; kernelMicrosPerFrame: number });
  assert.deepEqual(rows.map((r) => r.mode), ['driver', 'bare']);
  for (const r of rows) {
    assert.ok(r.frames >= 300, `${r.mode}: ${r.frames} frames sent`);
    assert.equal(r.acked, r.frames, `${r.mode}: every frame acked`);
    assert.ok(Number.isFinite(r.userMicrosPerFrame) && Number.isFinite(r.kernelMicrosPerFrame));
  }
});

// load-tests/map-client-cost.ts likewise: both packet formats deliver every room frame to every
// client and decode its entities; the bench's sink subscribers count the same frames, decoding none.
test('map-client-cost: both packet formats deliver the frames, entities decoded; sinks count them', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [join(projectRoot(), 'dist/load-tests/map-client-cost.js'), '--clients', '20', '--entities', '5', '--interval-ms', '50', '--seconds', '1', '--rounds', '1'], { timeout: 60_000 });
  const rows = stdout.trim().split('\n').map((l) => JSON.parse(l) as { format: string; framesPerSec: number; expectedFramesPerSec: number; entitiesPerFrame: number; userMicrosPerFrame: number });
  assert.deepEqual(rows.map((r) => r.format), ['msgpack', 'default', 'sink']);
  for (const r of rows) {
    assert.equal(r.entitiesPerFrame, r.format === 'sink' ? 0 : 5, r.format);
    assert.ok(r.framesPerSec >= r.expectedFramesPerSec * 0.7, `${r.format}: ${r.framesPerSec} of ${r.expectedFramesPerSec} frames/s`);
    assert.ok(Number.isFinite(r.userMicrosPerFrame));
  }
});

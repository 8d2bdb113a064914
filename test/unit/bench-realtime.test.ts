/** `npm run bench -- --realtime`: raising processes to SCHED_RR and lowering them back (lib/realtime.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { checkRealtimeAllowed, lowerIfLeftRaised, raiseToRealtime, schedulingPolicy } from '../../load-tests/lib/realtime.js';
import { runQueueWaitSeconds } from '../../load-tests/lib/proc-stat.js';

const allowed = (() => { try { checkRealtimeAllowed(); return true; } catch (err) { return (err as Error).message; } })();

test('raiseToRealtime: every listed process to SCHED_RR; the returned function lowers them back', { skip: allowed === true ? false : allowed }, async () => {
  const kids = [spawn('sleep', ['30']), spawn('sleep', ['30'])];
  try {
    const procs = kids.map((k, i) => ({ label: `p${i}`, pid: k.pid! }));
    for (const p of procs) assert.equal(schedulingPolicy(p.pid), 'SCHED_OTHER');
    const lower = raiseToRealtime(procs);
    for (const p of procs) assert.equal(schedulingPolicy(p.pid), 'SCHED_RR');
    kids[1]!.kill();
    await once(kids[1]!, 'exit');
    lower(); // one of them is gone: no throw
    assert.equal(schedulingPolicy(procs[0]!.pid), 'SCHED_OTHER');
  } finally {
    for (const k of kids) k.kill();
  }
});

test('raiseToRealtime: a process that does not exist is a clear error, and nothing stays raised', { skip: allowed === true ? false : allowed }, async () => {
  const kid = spawn('sleep', ['30']);
  try {
    assert.throws(() => raiseToRealtime([{ label: 'ok', pid: kid.pid! }, { label: 'gone', pid: 2 ** 22 + 12345 }]), /--realtime: chrt failed/);
    assert.equal(schedulingPolicy(kid.pid!), 'SCHED_OTHER');
  } finally {
    kid.kill();
  }
});

test('runQueueWaitSeconds: a number for a live process, undefined for none or a gone one', () => {
  const w = runQueueWaitSeconds(process.pid);
  assert.ok(w === undefined || (Number.isFinite(w) && w >= 0), String(w));
  assert.equal(runQueueWaitSeconds(undefined), undefined);
  assert.equal(runQueueWaitSeconds(2 ** 22 + 12345), undefined);
});

test('lowerIfLeftRaised: a process an interrupted run left raised goes back to normal; a normal one is left alone', { skip: allowed === true ? false : allowed }, async () => {
  const kid = spawn('sleep', ['30']);
  try {
    const p = { label: 'redis', pid: kid.pid! };
    assert.equal(lowerIfLeftRaised(p), false, 'already normal');
    raiseToRealtime([p]); // and never lowered: the run was interrupted
    assert.equal(schedulingPolicy(p.pid), 'SCHED_RR');
    assert.equal(lowerIfLeftRaised(p), true);
    assert.equal(schedulingPolicy(p.pid), 'SCHED_OTHER');
  } finally {
    kid.kill();
  }
});

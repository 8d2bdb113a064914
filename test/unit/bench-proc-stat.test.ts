/** The benchmark's machine-wide CPU figure (/proc/stat). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { machineBusy, machineBusyNotes, machineCpu } from '../../load-tests/lib/proc-stat.js';

test('machine busy share: from /proc/stat samples, nothing when unknown', async () => {
  assert.equal(machineBusy({ busy: 100, total: 400, steal: 0 }, { busy: 250, total: 600, steal: 0 }), 0.75);
  assert.equal(machineBusy(undefined, { busy: 1, total: 2, steal: 0 }), undefined);
  assert.equal(machineBusy({ busy: 1, total: 2, steal: 0 }, { busy: 1, total: 2, steal: 0 }), undefined, 'no time passed');
  assert.match(machineBusyNotes({ busy: 100, total: 400, steal: 10 }, { busy: 250, total: 600, steal: 30 })[0]!, /75 % busy .*, of which 10 % stolen by the hypervisor\)$/);
  assert.doesNotMatch(machineBusyNotes({ busy: 100, total: 400, steal: 10 }, { busy: 250, total: 600, steal: 10 })[0]!, /stolen/);
  assert.deepEqual(machineBusyNotes(undefined, undefined), []);
  const a = machineCpu();
  assert.ok(a && a.total > 0 && a.busy >= 0 && a.busy <= a.total, JSON.stringify(a));
  const t0 = Date.now();
  while (Date.now() - t0 < 60) { /* keep a core busy */ }
  const share = machineBusy(a, machineCpu());
  assert.ok(share !== undefined && share > 0 && share <= 1, String(share));
  assert.match(machineBusyNotes(a, machineCpu())[0]!, /^machine: [\d.]+ % busy over its \d+ cores/);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sliceCounts } from '../../workers/stream-reader.js';

const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);

test('sliceCounts: never more than the budget in all, never more than a stream\'s cap, as even as possible', () => {
  for (const n of [1, 2, 3, 7, 40, 1000]) {
    for (const budget of [0, 1, 5, n - 1, n, n + 1, 3 * n + 2, 100, 399_999, 400_000]) {
      for (const cap of [1, 3, 10_000]) {
        const caps = Array.from({ length: n }, (_, i) => (i % 3 === 1 ? Math.min(cap, 2) : cap));
        const c = sliceCounts(caps, budget);
        assert.equal(c.length, n);
        assert.ok(sum(c) <= budget, `n ${n}, budget ${budget}, cap ${cap}: ${sum(c)} > budget`);
        c.forEach((x, i) => assert.ok(x >= 0 && x <= caps[i]!, `count ${x} beyond cap ${caps[i]}`));
        // Uncapped, the split is even: counts differ by at most one and use the whole budget.
        const even = sliceCounts(Array.from({ length: n }, () => Number.MAX_SAFE_INTEGER), budget);
        assert.equal(sum(even), budget);
        assert.ok(Math.max(...even) - Math.min(...even) <= 1);
      }
    }
  }
});

test('sliceCounts: fewer entries of budget than streams reads one entry from the first ones only (ceil would read one from each)', () => {
  assert.deepEqual(sliceCounts([10, 10, 10, 10, 10], 3), [1, 1, 1, 0, 0]);
  assert.deepEqual(sliceCounts([10, 10, 10], 0), [0, 0, 0]);
  assert.deepEqual(sliceCounts([10, 2, 10], 20), [7, 2, 6]);
  assert.deepEqual(sliceCounts([10, 2, 10], Infinity), [10, 2, 10], 'no budget: each stream its cap');
});

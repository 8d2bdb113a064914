/** An interrupted `npm run bench` stops the processes it started (load-tests/lib/children.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/load.js';

const alive = (pid: number): boolean => {
  try { process.kill(pid, 0); return true; } catch { return false; }
};

for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
  test(`${signal}: the harness stops its children (one that ignores SIGTERM is killed) and exits ${code}`, async () => {
    const lib = pathToFileURL(join(projectRoot(), 'dist/load-tests/lib/children.js')).href;
    // A stand-in for run.js: two children, the second ignores SIGTERM; prints their pids.
    const harness = `
      import { spawn } from 'node:child_process';
      import { trackChild, stopChildrenOnSignal } from ${JSON.stringify(lib)};
      stopChildrenOnSignal((l) => console.error(l), 300);
      const a = trackChild(spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }));
      const b = trackChild(spawn(process.execPath, ['-e', 'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000)'], { stdio: 'ignore' }));
      setTimeout(() => console.log(JSON.stringify([a.pid, b.pid])), 300);
      setInterval(() => {}, 1000);`;
    const h = spawn(process.execPath, ['--input-type=module', '-e', harness], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    h.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    const [line] = await once(h.stdout, 'data') as [Buffer];
    const pids = JSON.parse(line.toString()) as number[];
    assert.ok(pids.every(alive), 'children running');
    const exited = once(h, 'exit');
    h.kill(signal);
    const [exitCode] = await exited as [number | null];
    assert.equal(exitCode, code, err);
    assert.match(err, new RegExp(`${signal}: stopping 2 child process`));
    for (let i = 0; i < 40 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(pids.filter(alive), [], 'no child left running');
  });
}

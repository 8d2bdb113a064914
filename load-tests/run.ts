/**
 * `npm run bench`: brings up the bench stack (private Redis + PostGIS on 6392/5442), measures
 * the machine's ceilings, runs the scenarios one after the other (each starts the gateways and
 * workers it needs as child processes), prints a summary table and writes a JSON result into
 * load-tests/results/. See docs/benchmarks.md.
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { projectRoot } from '../src/config/load.js';
import { HELP, parseBenchArgs, type ScenarioName } from './lib/args.js';
import { measureCeilings } from './lib/ceilings.js';
import type { ScenarioContext } from './lib/context.js';
import { progress, summaryTable, writeResult, type RunResult, type ScenarioResult } from './lib/report.js';
import { benchStackUp, raiseFdLimit, type BenchStack } from './lib/stack.js';
import { stopChildrenOnSignal } from './lib/children.js';

type Main = (ctx: ScenarioContext) => Promise<ScenarioResult | ScenarioResult[]>;
const SCENARIO_MODULES: Record<ScenarioName, () => Promise<{ main: Main }>> = {
  ingest: () => import('./scenarios/ingest.js'),
  'ingest-single': () => import('./scenarios/ingest-single.js'),
  idle: () => import('./scenarios/idle.js'),
  fanout: () => import('./scenarios/fanout.js'),
  nearby: () => import('./scenarios/nearby.js'),
  persistence: () => import('./scenarios/persistence.js'),
  scale: () => import('./scenarios/scale.js'),
};

async function run(): Promise<number> {
  let opts;
  try {
    opts = parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  stopChildrenOnSignal(progress);
  const fdLimit = raiseFdLimit(opts.scenarios.includes('scale') ? 200_000 : 65_536);
  const startedAt = new Date().toISOString();
  const run: RunResult = {
    startedAt, finishedAt: '', command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim().replace(/ --$/, ''),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', memGb: Math.round(totalmem() / 2 ** 30), node: process.version, loadavgStart: loadavg().map((x) => Math.round(x * 100) / 100), fdLimit },
    options: opts, ceilings: {}, results: [],
  };
  progress(`scenarios: ${opts.scenarios.join(', ')}; ${opts.duration}s each; open-files limit ${fdLimit}`);
  // The local stack starts when a scenario first needs it (never with --target).
  let stack: BenchStack | undefined;
  const ctx: ScenarioContext = { opts, ceilings: run.ceilings, get stack() { return (stack ??= benchStackUp()); } };
  if (!opts.skipCeilings) run.ceilings = ctx.ceilings = await measureCeilings(ctx.stack, { redisBenchN: opts.redisBenchN, copyRows: opts.copyRows, echoSeconds: opts.smoke ? 3 : 10 });
  for (const name of opts.scenarios) {
    progress(`=== ${name}`);
    const t0 = Date.now();
    const cpu0 = process.cpuUsage();
    const eld = monitorEventLoopDelay({ resolution: 10 });
    eld.enable();
    let r: ScenarioResult | ScenarioResult[];
    try {
      const mod = await SCENARIO_MODULES[name]();
      r = await mod.main(ctx);
    } catch (err) {
      progress(`${name} failed: ${(err as Error).stack ?? String(err)}`);
      r = { scenario: name, load: '-', error: (err as Error).message };
    }
    eld.disable();
    const secs = (Date.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    // The harness shares the machine with what it measures: say how busy it was.
    const harness = { cores: Math.round(((cpu.user + cpu.system) / 1e6 / secs) * 100) / 100, eventLoopDelayP99Ms: Math.round(eld.percentile(99) / 1e4) / 100 };
    progress(`${name} done in ${secs.toFixed(1)}s (harness ${harness.cores} cores, event-loop delay p99 ${harness.eventLoopDelayP99Ms} ms)`);
    for (const x of Array.isArray(r) ? r : [r]) {
      x.extra = { ...x.extra, harness };
      (x.notes ??= []).push(`harness (load generator, same machine): ${harness.cores} cores, event-loop delay p99 ${harness.eventLoopDelayP99Ms} ms`);
      run.results.push(x);
    }
  }
  run.finishedAt = new Date().toISOString();
  run.machine.loadavgEnd = loadavg().map((x) => Math.round(x * 100) / 100);
  const out = opts.out ?? join(projectRoot(), 'load-tests/results', `bench-${startedAt.replace(/[:.]/g, '-')}.json`);
  writeResult(out, run);
  process.stdout.write(`\n${summaryTable(run)}\n\nresult: ${out}\n`);
  return run.results.some((r) => r.error) ? 1 : 0;
}

process.exitCode = await run();

/**
 * Command-line options of `npm run bench`. Defaults are the CI smoke (all scenarios, under two
 * minutes on a 2-core box); every size can be scaled up from the command line.
 */
import { parseCliArgs } from '../../src/lifecycle/cli-args.js';
import { BENCH_ISSUER, BENCH_JWT_SECRET } from './stack.js';

export const SCENARIOS = ['ingest', 'ingest-single', 'idle', 'fanout', 'nearby', 'persistence', 'scale'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface BenchOptions {
  /** Scenarios to run, in order. */
  scenarios: ScenarioName[];
  /** Measured seconds per scenario (after warm-up). */
  duration: number;
  /** Offered pings/s (ingest, persistence), requests/s (nearby). 0 = scenario default. */
  rate: number;
  /** Driver sockets (ingest, fanout). 0 = scenario default. */
  drivers: number;
  /** Pings per frame for batched ingest. */
  batch: number;
  /** fanout: vehicles per driver socket (fleet feeds, one ping of each per frame); 1 = one socket per vehicle, one ping per frame. */
  fleet: number;
  /** Map subscribers (fanout). */
  subscribers: number;
  /** Gateways for fanout. */
  gateways: number;
  /** fanout: the drivers are spread round-robin over the first n gateways (1 = all on gateway 0). */
  driverGateways: number;
  /** Forked load-generator processes holding the fanout subscribers. */
  viewerProcs: number;
  /** fanout: subscribers that are MapClients measuring delivery (spread evenly); the rest are sinks. 0 = all. */
  sample: number;
  /** fanout with --sample: the sinks in one native process (load-tests/sink/sink.c) or in Node processes. */
  sinks: 'native' | 'node';
  /** Native sinks: read at most every this many ms (0: as frames arrive). */
  sinkReadMs: number;
  /** Gateways for ingest / ingest-single (sockets spread round-robin). */
  ingestGateways: number;
  /** Forked load-generator processes holding the ingest driver sockets (1 = in the runner itself). */
  driverProcs: number;
  /** Idle connections (idle scenario). */
  idle: number;
  /** Connection-scale sizes. */
  scaleDrivers: number;
  scaleMaps: number;
  /** Rows for the COPY ceiling; requests for the ceilings' redis-benchmark runs. */
  copyRows: number;
  redisBenchN: number;
  skipCeilings: boolean;
  /** persistence: 'window' | 'raw' | 'both'. */
  persistMode: 'window' | 'raw' | 'both';
  /** Worker processes in the persistence scenario's steady phase. */
  workers: number;
  /** Where the JSON result goes (default load-tests/results/bench-<time>.json). */
  out: string | undefined;
  /** fanout against gateways that run elsewhere (--target): their base URLs; no local stack. */
  targetGateways: string[] | undefined;
  /** Their Redis, for its CPU figure (--target-redis); optional. */
  targetRedis: string | undefined;
  /** fanout: gateways, Redis and the measuring MapClients at real-time priority (lib/realtime.ts). */
  realtime: boolean;
  smoke: boolean;
}

export const HELP = `npm run bench -- [options]

  --scenario <name[,name]>  ${SCENARIOS.join(', ')} or all (default: all)
  --duration <s>            measured seconds per scenario            (smoke: 6, --full: 60)
  --rate <n>                offered pings/s (ingest, persistence, fanout) or requests/s (nearby)
  --drivers <n>             driver sockets for ingest / fanout
  --batch <n>               pings per frame in batched ingest        (default 25)
  --fleet <k>               fanout: k vehicles per driver socket (fleet feeds, k current pings per frame; default 1 = phones)
  --subscribers <n>         map subscribers for fanout               (smoke: 200, --full: 1000)
  --gateways <n>            gateways for fanout                      (default 2)
  --driver-gateways <n>     fanout: drivers spread over the first n gateways (default 1: all on gateway 0)
  --viewer-procs <n>        forked processes holding the fanout subscribers (default 2)
  --sample <n>              fanout: only n subscribers (spread evenly over tiles and gateways) are
                            MapClients that decode and time every update; the others are sinks
                            that subscribe alike and count their frames without decoding them
                            (load-tests/lib/sink-viewer.ts): the gateways' work is the same, the
                            load generator's far less (default: all subscribers are MapClients)
  --sinks <native|node>     with --sample: the sinks in one native process (load-tests/sink/sink.c,
                            built with the system's cc on first use: one read() per frame) or in
                            Node processes (lib/sink-viewer.ts)                (default native)
  --sink-read-ms <ms>       native sinks read at most every <ms>: one read takes in every frame
                            that arrived meanwhile; the gateways' writes are the same (default 0:
                            each frame as it arrives)
  --ingest-gateways <n>     gateways for ingest, ingest-single       (default 1; the design runs one per core)
  --driver-procs <n>        forked processes holding the ingest driver sockets (default 2; 1 = in the runner)
  --idle <n>                idle driver sockets                      (smoke: 2000, --full: 10000)
  --scale-drivers <n>       connection scale: drivers                (smoke: 2000, --full: 20000)
  --scale-maps <n>          connection scale: map clients            (smoke: 500, --full: 5000)
  --copy-rows <n>           rows for the COPY ceiling                (smoke: 100000, --full: 500000)
  --redis-bench-n <n>       requests per redis-benchmark run         (smoke: 200000, --full: 1000000)
  --persist-mode <m>        window | raw | both                      (default both)
  --workers <n>             persistence: worker processes in the steady phase (default 1)
  --no-ceilings             skip the ceiling measurements
  --target <url[,url]>      fanout only: drive gateways running elsewhere (drivers on the first,
                            subscribers spread over all) instead of starting a local stack; the
                            load generator gets this machine's cores to itself. The gateways must
                            accept the bench tokens: JWT_SECRET=${BENCH_JWT_SECRET} JWT_ISSUER=${BENCH_ISSUER}.
                            Their Redis is not flushed; no ceilings; gateway CPU and RSS from /metrics
  --target-redis <url>      with --target: the gateways' Redis, for its CPU figure (INFO cpu)
  --realtime                fanout only: the gateways, Redis and the measuring MapClients' process
                            run at real-time priority (SCHED_RR 1, chrt; needs root or
                            CAP_SYS_NICE), so the ping sender and the sinks only get the CPU they
                            leave, as load generators on other machines would (lib/realtime.ts)
  --out <file>              JSON result path
  --full                    the target sizes of docs/benchmarks.md instead of the smoke
`;

/** `--help` prints HELP and exits 0, an unknown option exits 2 (parseCliArgs); a bad value throws. */
export function parseBenchArgs(argv: string[]): BenchOptions {
  const values = parseCliArgs(HELP, {
    scenario: { type: 'string' }, duration: { type: 'string' }, rate: { type: 'string' },
    drivers: { type: 'string' }, batch: { type: 'string' }, fleet: { type: 'string' }, subscribers: { type: 'string' },
    gateways: { type: 'string' }, 'viewer-procs': { type: 'string' }, sample: { type: 'string' }, sinks: { type: 'string' }, 'sink-read-ms': { type: 'string' }, 'driver-gateways': { type: 'string' }, 'ingest-gateways': { type: 'string' }, 'driver-procs': { type: 'string' }, idle: { type: 'string' }, 'scale-drivers': { type: 'string' },
    'scale-maps': { type: 'string' }, 'copy-rows': { type: 'string' }, 'redis-bench-n': { type: 'string' },
    'persist-mode': { type: 'string' }, workers: { type: 'string' }, 'no-ceilings': { type: 'boolean' }, out: { type: 'string' },
    full: { type: 'boolean' }, target: { type: 'string' }, 'target-redis': { type: 'string' }, realtime: { type: 'boolean' },
  }, argv);
  const full = values.full === true;
  const num = (v: string | undefined, def: number): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`not a non-negative number: ${v}`);
    return n;
  };
  let scenarios: ScenarioName[];
  const s = values.scenario;
  if (!s || s === 'all') scenarios = [...SCENARIOS];
  else {
    scenarios = s.split(',').map((x) => x.trim()) as ScenarioName[];
    const bad = scenarios.filter((x) => !(SCENARIOS as readonly string[]).includes(x));
    if (bad.length) throw new Error(`unknown scenario(s): ${bad.join(', ')}; known: ${SCENARIOS.join(', ')}`);
  }
  const targetGateways = values.target?.split(',').map((u) => u.trim().replace(/\/+$/, '')).filter(Boolean);
  if (targetGateways) {
    if (targetGateways.length === 0) throw new Error('--target: one or more gateway URLs (http://host:port)');
    for (const u of targetGateways) {
      if (!/^https?:\/\/[^/\s]+$/.test(u)) throw new Error(`--target: not a gateway base URL (http://host:port): ${u}`);
    }
    if (scenarios.length !== 1 || scenarios[0] !== 'fanout') throw new Error('--target runs the fanout scenario only: add --scenario fanout');
  }
  if (values['target-redis'] !== undefined && !targetGateways) throw new Error('--target-redis needs --target');
  const realtime = values.realtime === true;
  if (realtime && (scenarios.length !== 1 || scenarios[0] !== 'fanout')) throw new Error('--realtime runs the fanout scenario only: add --scenario fanout');
  if (realtime && targetGateways) throw new Error('--realtime raises local processes: not with --target (the gateways run elsewhere)');
  const mode = values['persist-mode'] ?? 'both';
  const sinks = values.sinks ?? 'native';
  if (sinks !== 'native' && sinks !== 'node') throw new Error('--sinks: native | node');
  if (!['window', 'raw', 'both'].includes(mode)) throw new Error(`--persist-mode: window | raw | both`);
  return {
    scenarios,
    duration: num(values.duration, full ? 60 : 6),
    rate: num(values.rate, 0),
    drivers: num(values.drivers, 0),
    batch: Math.max(1, num(values.batch, 25)),
    fleet: Math.max(1, num(values.fleet, 1)),
    subscribers: num(values.subscribers, full ? 1000 : 200),
    gateways: Math.max(1, num(values.gateways, 2)),
    driverGateways: Math.max(1, num(values['driver-gateways'], 1)),
    viewerProcs: Math.max(1, num(values['viewer-procs'], 2)),
    sample: Math.floor(num(values.sample, 0)),
    sinks,
    sinkReadMs: Math.max(0, num(values['sink-read-ms'], 0)),
    ingestGateways: Math.max(1, num(values['ingest-gateways'], 1)),
    driverProcs: Math.max(1, num(values['driver-procs'], 2)),
    idle: num(values.idle, full ? 10_000 : 2000),
    scaleDrivers: num(values['scale-drivers'], full ? 20_000 : 2000),
    scaleMaps: num(values['scale-maps'], full ? 5000 : 500),
    copyRows: num(values['copy-rows'], full ? 500_000 : 100_000),
    redisBenchN: num(values['redis-bench-n'], full ? 1_000_000 : 200_000),
    skipCeilings: values['no-ceilings'] === true || targetGateways !== undefined,
    persistMode: mode as BenchOptions['persistMode'],
    workers: Math.max(1, num(values.workers, 1)),
    out: values.out,
    targetGateways,
    targetRedis: values['target-redis'],
    realtime,
    smoke: !full,
  };
}

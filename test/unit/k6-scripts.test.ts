/**
 * k6 cannot run on this machine, so the k6 scripts are checked statically: each parses as an ES
 * module (acorn), imports only k6 modules (or sibling files under load-tests/k6 that pass the
 * same check), uses no Node/CommonJS loading, and each entry script exports `options`, a default
 * function, and every `exec` function its scenarios name; thresholds name metrics that exist.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import * as acorn from 'acorn';
import { projectRoot } from '../../src/config/load.js';

const K6_DIR = join(projectRoot(), 'load-tests', 'k6');
export const K6_MODULES = new Set(['k6', 'k6/ws', 'k6/experimental/websockets', 'k6/http', 'k6/metrics', 'k6/crypto', 'k6/encoding', 'k6/execution']);
const BUILTIN_METRICS = new Set([
  'checks', 'data_received', 'data_sent', 'dropped_iterations', 'iteration_duration', 'iterations', 'vus', 'vus_max',
  'http_req_blocked', 'http_req_connecting', 'http_req_duration', 'http_req_failed', 'http_req_receiving', 'http_req_sending',
  'http_req_tls_handshaking', 'http_req_waiting', 'http_reqs',
  'ws_connecting', 'ws_msgs_received', 'ws_msgs_sent', 'ws_ping', 'ws_session_duration', 'ws_sessions',
]);

type Node = acorn.Node & Record<string, unknown>;

function walk(node: unknown, visit: (n: Node) => void): void {
  if (!node || typeof node !== 'object') return;
  if (Array.isArray(node)) { for (const c of node) walk(c, visit); return; }
  const n = node as Node;
  if (typeof n.type === 'string') visit(n);
  for (const [k, v] of Object.entries(n)) if (k !== 'loc' && v && typeof v === 'object') walk(v, visit);
}

function listJs(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listJs(p));
    else if (name.endsWith('.js')) out.push(p);
  }
  return out.sort();
}

interface Parsed {
  file: string;
  ast: acorn.Program;
  imports: string[];
  exports: Set<string>;
  metrics: Set<string>;
  /** exported const options, as its AST node */
  options?: Node;
}

const cache = new Map<string, Parsed>();

function parse(file: string): Parsed {
  const hit = cache.get(file);
  if (hit) return hit;
  const src = readFileSync(file, 'utf8');
  const ast = acorn.parse(src, { ecmaVersion: 2022, sourceType: 'module' });
  const p: Parsed = { file, ast, imports: [], exports: new Set(), metrics: new Set() };
  for (const st of ast.body) {
    const s = st as unknown as Node;
    if (s.type === 'ImportDeclaration') p.imports.push((s.source as Node).value as string);
    if ((s.type === 'ExportNamedDeclaration' || s.type === 'ExportAllDeclaration') && s.source) p.imports.push((s.source as Node).value as string);
    if (s.type === 'ExportDefaultDeclaration') p.exports.add('default');
    if (s.type === 'ExportNamedDeclaration') {
      const d = s.declaration as Node | null;
      if (d?.type === 'FunctionDeclaration') p.exports.add((d.id as Node).name as string);
      if (d?.type === 'VariableDeclaration') {
        for (const v of d.declarations as Node[]) {
          const name = (v.id as Node).name as string;
          p.exports.add(name);
          if (name === 'options') p.options = v.init as Node;
        }
      }
      for (const sp of (s.specifiers as Node[]) ?? []) p.exports.add((sp.exported as Node).name as string);
    }
  }
  walk(ast, (n) => {
    if (n.type === 'ImportExpression') assert.fail(`${rel(file)}: dynamic import() is not available in k6`);
    if (n.type === 'CallExpression' && (n.callee as Node).type === 'Identifier' && (n.callee as Node).name === 'require') assert.fail(`${rel(file)}: require() is CommonJS, not k6`);
    if (n.type === 'NewExpression' && (n.callee as Node).type === 'Identifier' && ['Trend', 'Rate', 'Counter', 'Gauge'].includes((n.callee as Node).name as string)) {
      const a = (n.arguments as Node[])[0];
      if (a?.type === 'Literal' && typeof a.value === 'string') p.metrics.add(a.value);
    }
  });
  cache.set(file, p);
  return p;
}

const rel = (f: string): string => relative(projectRoot(), f);

/** All files reachable from `file` through local imports (itself included). */
function closure(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  for (const spec of parse(file).imports) if (spec.startsWith('.')) closure(resolve(dirname(file), spec), seen);
  return seen;
}

function prop(obj: Node | undefined, key: string): Node | undefined {
  if (obj?.type !== 'ObjectExpression') return undefined;
  for (const p of obj.properties as Node[]) {
    const k = p.key as Node;
    const name = k.type === 'Identifier' ? k.name : k.value;
    if (name === key) return p.value as Node;
  }
  return undefined;
}

function keysOf(obj: Node | undefined): string[] {
  if (obj?.type !== 'ObjectExpression') return [];
  return (obj.properties as Node[]).map((p) => { const k = p.key as Node; return String(k.type === 'Identifier' ? k.name : k.value); });
}

const files = listJs(K6_DIR);
const entries = files.filter((f) => dirname(f) === K6_DIR);

test('there are k6 scripts for drivers, map viewers, dispatchers and the rush hour', () => {
  const names = entries.map((f) => rel(f));
  for (const n of ['drivers.js', 'map-viewers.js', 'dispatchers.js', 'rush-hour.js']) assert.ok(names.includes(`load-tests/k6/${n}`), `missing ${n}`);
});

test('every k6 file parses as an ES module and imports only k6 modules or sibling k6 files', () => {
  for (const f of files) {
    const p = parse(f);
    for (const spec of p.imports) {
      if (K6_MODULES.has(spec)) continue;
      assert.ok(spec.startsWith('./') || spec.startsWith('../'), `${rel(f)} imports '${spec}': only k6 modules (${[...K6_MODULES].join(', ')}) or local files`);
      const target = resolve(dirname(f), spec);
      assert.ok(target.startsWith(K6_DIR + '/'), `${rel(f)} imports '${spec}' outside load-tests/k6`);
      assert.ok(existsSync(target), `${rel(f)} imports '${spec}', which does not exist`);
      assert.ok(target.endsWith('.js'), `${rel(f)} imports '${spec}': k6 needs the .js extension`);
    }
  }
});

test('each entry script exports options, a default function and the exec functions of its scenarios', () => {
  for (const f of entries) {
    const p = parse(f);
    assert.ok(p.exports.has('options'), `${rel(f)} exports no options`);
    assert.ok(p.exports.has('default'), `${rel(f)} has no default export`);
    assert.equal(p.options?.type, 'ObjectExpression', `${rel(f)}: options must be an object literal`);
    const scenarios = prop(p.options, 'scenarios');
    assert.ok(scenarios, `${rel(f)}: options.scenarios missing`);
    for (const name of keysOf(scenarios)) {
      const sc = prop(scenarios, name);
      const exec = prop(sc, 'exec');
      assert.ok(prop(sc, 'executor'), `${rel(f)}: scenario ${name} has no executor`);
      assert.ok(prop(sc, 'tags'), `${rel(f)}: scenario ${name} has no tags`);
      if (exec) {
        assert.equal(exec.type, 'Literal', `${rel(f)}: scenario ${name}.exec must be a string literal`);
        assert.ok(p.exports.has(exec.value as string), `${rel(f)}: scenario ${name} runs '${String(exec.value)}', which is not exported`);
      }
    }
  }
});

test('thresholds encode the targets and name metrics that exist', () => {
  for (const f of entries) {
    const p = parse(f);
    const metrics = new Set(BUILTIN_METRICS);
    for (const g of closure(f)) for (const m of parse(g).metrics) metrics.add(m);
    const thresholds = prop(p.options, 'thresholds');
    const keys = keysOf(thresholds);
    assert.ok(keys.length > 0, `${rel(f)}: no thresholds`);
    for (const k of keys) assert.ok(metrics.has(k.split('{')[0]!), `${rel(f)}: threshold on unknown metric '${k}'`);
    const src = readFileSync(f, 'utf8');
    assert.match(src, /p\(99\)</, `${rel(f)}: no p99 threshold`);
    assert.ok(keys.some((k) => /failed|errors|checks/.test(k)), `${rel(f)}: no error-rate threshold`);
  }
  const rush = parse(join(K6_DIR, 'rush-hour.js'));
  const keys = keysOf(prop(rush.options, 'thresholds'));
  for (const m of ['ack_latency', 'delivery_delay', 'http_req_duration']) assert.ok(keys.some((k) => k.startsWith(m)), `rush-hour.js: no threshold on ${m}`);
});

test('scripts read host and sizes from the environment', () => {
  const lib = readFileSync(join(K6_DIR, 'lib', 'geoflux.js'), 'utf8');
  assert.match(lib, /__ENV\.HOST/);
  for (const [f, v] of [['drivers.js', 'DRIVERS'], ['map-viewers.js', 'VIEWERS'], ['dispatchers.js', 'RATE'], ['rush-hour.js', 'NEARBY_RATE']] as const) {
    assert.match(readFileSync(join(K6_DIR, f), 'utf8'), new RegExp(`envInt\\('${v}'`), `${f} does not read ${v}`);
  }
});

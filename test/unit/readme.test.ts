import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import GithubSlugger from 'github-slugger';
import { projectRoot } from '../../src/config/load.js';
import { ENV_VARS } from '../../src/config/env.js';

// What users read must stay true: every configuration variable is documented in the README,
// every local file it links to exists, every heading it links to is there, and every npm script
// it names is defined.
const root = projectRoot();
const readme = readFileSync(join(root, 'README.md'), 'utf8');

test('the README documents every configuration variable', () => {
  const missing = Object.keys(ENV_VARS).filter((name) => !readme.includes(`\`${name}\``));
  assert.deepEqual(missing, [], `README lacks: ${missing.join(', ')}`);
});

test('local links in the README point at files that exist', () => {
  const links = [...readme.matchAll(/\]\((?!https?:|#)([^)#\s]+)(?:#[^)]*)?\)/g)].map((m) => m[1]!);
  assert.ok(links.length > 0);
  const broken = links.filter((l) => !existsSync(join(root, l)));
  assert.deepEqual(broken, []);
});

/** The anchors GitHub gives the headings of a Markdown file (outside code fences). */
function headingAnchors(file: string): Set<string> {
  const slugger = new GithubSlugger();
  const out = new Set<string>();
  let fence = false;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('```')) fence = !fence;
    const m = fence ? null : /^#{1,6}\s+(.*)$/.exec(line);
    if (m) out.add(slugger.slug(m[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')));
  }
  return out;
}

test('links to headings in the README and docs/ point at headings that exist', () => {
  const files = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
  const anchors = new Map<string, Set<string>>();
  const of = (f: string): Set<string> => anchors.get(f) ?? anchors.set(f, headingAnchors(join(root, f))).get(f)!;
  const broken: string[] = [];
  let checked = 0;
  for (const f of files) {
    for (const m of readFileSync(join(root, f), 'utf8').matchAll(/\]\(((?!https?:)[^)#\s]*)#([^)\s]+)\)/g)) {
      const target = m[1] ? join(dirname(f), m[1]) : f;
      checked++;
      if (!existsSync(join(root, target)) || !of(target).has(decodeURIComponent(m[2]!))) broken.push(`${f} → ${m[1]}#${m[2]}`);
    }
  }
  assert.ok(checked > 0);
  assert.deepEqual(broken, []);
});

test('npm scripts named in the README exist', () => {
  const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const named = [...readme.matchAll(/npm run (?:-s )?([a-z:]+)/g)].map((m) => m[1]!);
  const unknown = [...new Set(named)].filter((n) => !(n in scripts));
  assert.deepEqual(unknown, []);
});

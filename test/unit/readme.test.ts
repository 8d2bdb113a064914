import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/config/load.js';
import { ENV_VARS } from '../../src/config/env.js';

// What users read must stay true: every configuration variable is documented in the README,
// every local file it links to exists, and every npm script it names is defined.
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

test('npm scripts named in the README exist', () => {
  const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const named = [...readme.matchAll(/npm run (?:-s )?([a-z:]+)/g)].map((m) => m[1]!);
  const unknown = [...new Set(named)].filter((n) => !(n in scripts));
  assert.deepEqual(unknown, []);
});

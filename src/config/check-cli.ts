/** `npm run config:check`: validate the configuration without starting anything. */
import { loadConfig, ConfigError } from './load.js';

try {
  const cfg = loadConfig();
  const shown = { ...cfg, auth: { ...cfg.auth, jwtSecret: '<redacted>' } };
  process.stdout.write(JSON.stringify(shown, null, 2) + '\nconfig OK\n');
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exitCode = err instanceof ConfigError ? 2 : 1;
}

import { join, resolve } from 'node:path';
import { projectRoot } from '../config/load.js';

/**
 * The shared data folder (Porto roads, Dublin bus traces): SIM_DATA_DIR when set, else
 * `<project root>/../shared/data`. Read by the simulator and by the map page's street layer.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.SIM_DATA_DIR || join(projectRoot(), '..', 'shared', 'data'));
}

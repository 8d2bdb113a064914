/** Gateway composition root: config, clients, gateway, signals. */
import { createLogger } from './log/logger.js';
import { runProcess, loadConfigOrExit } from './lifecycle/run-process.js';
import { requireNativeUws, UwsFallbackError } from './gateway/uws.js';
import { connectRedis, quitRedis } from './store/redis/client.js';
import { connectPg, endPg } from './store/pg/pool.js';
import { migrate } from './store/pg/migrate.js';
import { createGateway } from './gateway/gateway.js';

const cfg = loadConfigOrExit();
const log = createLogger(cfg, 'gateway');

await runProcess({
  log,
  shutdownTimeoutMs: cfg.shutdown.timeoutMs,
  async start() {
    let uws;
    try {
      uws = requireNativeUws(cfg.http.allowUwsFallback);
    } catch (err) {
      if (err instanceof UwsFallbackError) log.fatal({ code: err.code }, err.message);
      throw err;
    }
    if (uws.native) log.info({ uws: uws.build, version: uws.version }, 'uWebSockets.js native binary loaded');
    else log.warn({ version: uws.version }, 'RUNNING ON THE SLOW PURE-JS uWebSockets.js FALLBACK (UWS_ALLOW_FALLBACK=true)');

    const redis = await connectRedis(cfg.redis.url, log, 'gateway');
    const redisSub = await connectRedis(cfg.redis.url, log, 'gateway-sub');
    const redisPub = await connectRedis(cfg.redis.url, log, 'gateway-pub');
    const pg = await connectPg(cfg.database.url, log, cfg.database.poolSize, 'geoflux-gateway');
    await migrate(pg, log);
    const gateway = createGateway({ cfg, log, uws, redis, redisSub, redisPub, pg });
    await gateway.start();
    return {
      async stop() {
        await gateway.stop();
        await quitRedis(redisSub);
        await quitRedis(redisPub);
        await quitRedis(redis);
        await endPg(pg);
      },
    };
  },
});

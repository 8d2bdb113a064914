import type { TemplatedApp } from 'uWebSockets.js';
import type { Logger } from '../../log/logger.js';
import type { Config } from '../../config/schema.js';
import { ERRORS, CLOSE_CODES } from '../../protocol/errors.js';
import { MAX_MERCATOR_LAT } from '../../protocol/ping.js';
import { route } from '../respond.js';

export interface OpenApiDeps {
  log: Logger;
  cfg: Readonly<Config>;
  /** Paths other modules add (merged over the built-in ones). */
  extraPaths?: Record<string, unknown>;
}

const err = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
const errs = { 400: err('invalid parameters (BAD_REQUEST)'), 401: err('missing, invalid or expired token (UNAUTHORIZED)'), 403: err('token lacks the scope (FORBIDDEN)') };
const q = (name: string, schema: object, description: string, required = false) => ({ name, in: 'query', required, description, schema });
const json = (schema: object, description = 'OK') => ({ description, content: { 'application/json': { schema } } });
const ref = (n: string) => ({ $ref: `#/components/schemas/${n}` });
const secured = [{ bearer: [] }, { queryToken: [] }];

/** The OpenAPI 3 document of every REST endpoint the gateway serves. */
export function openApiDocument(cfg: Readonly<Config>, extraPaths: Record<string, unknown> = {}): object {
  const filters = [q('kind', { type: 'string', maxLength: 32 }, 'only entities of this kind'), q('status', { type: 'string', maxLength: 32 }, 'only entities with this status')];
  return {
    openapi: '3.0.3',
    info: { title: 'geoflux gateway', version: '0.1.0', description: `Real-time location ingest and live queries. Latitudes are limited to ±${MAX_MERCATOR_LAT} (Web Mercator / Redis GEO). Entities silent longer than ${cfg.liveness.entityTtlSeconds} s are never returned. WebSocket ingest: GET /v1/ingest (see docs/ingest.md); close codes: ${JSON.stringify(CLOSE_CODES)}.` },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
        queryToken: { type: 'apiKey', in: 'query', name: 'token' },
      },
      schemas: {
        Error: { type: 'object', required: ['error'], properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string', enum: Object.keys(ERRORS) }, message: { type: 'string' }, details: {} } } } },
        Ping: {
          type: 'object', required: ['id', 'lat', 'lon', 'ts'], additionalProperties: false,
          properties: {
            id: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,64}$' },
            lat: { type: 'number', minimum: -MAX_MERCATOR_LAT, maximum: MAX_MERCATOR_LAT },
            lon: { type: 'number', minimum: -180, maximum: 180 },
            ts: { type: 'integer', description: 'fix time, ms since the epoch' },
            seq: { type: 'integer', minimum: 0 },
            speed: { type: 'number', minimum: 0, maximum: 150, description: 'm/s' },
            heading: { type: 'number', minimum: 0, maximum: 360 },
            accuracy: { type: 'number', minimum: 0, maximum: 100000, description: 'metres' },
            kind: { type: 'string', maxLength: 32 },
            status: { type: 'string', maxLength: 32 },
            meta: { type: 'object', description: 'flat; at most 512 bytes as JSON', additionalProperties: { oneOf: [{ type: 'string', maxLength: 256 }, { type: 'number' }, { type: 'boolean' }], nullable: true } },
          },
        },
        PingError: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string', enum: Object.keys(ERRORS) }, message: { type: 'string' }, index: { type: 'integer' }, id: { type: 'string' }, seq: { type: 'integer' } } },
        PingsResult: { type: 'object', required: ['accepted', 'seq', 'errors'], properties: { accepted: { type: 'integer' }, seq: { type: 'integer', nullable: true }, errors: { type: 'array', items: ref('PingError') } } },
        LiveEntity: {
          type: 'object', required: ['id', 'lat', 'lon', 'ts', 'lastSeen'],
          properties: { id: { type: 'string' }, lat: { type: 'number' }, lon: { type: 'number' }, ts: { type: 'integer' }, lastSeen: { type: 'integer', description: 'server receive time of the latest ping, ms' }, seq: { type: 'integer' }, speed: { type: 'number' }, heading: { type: 'number' }, accuracy: { type: 'number' }, kind: { type: 'string' }, status: { type: 'string' }, meta: { type: 'object' } },
        },
        NearbyHit: { allOf: [ref('LiveEntity'), { type: 'object', required: ['distance'], properties: { distance: { type: 'number', description: 'metres' } } }] },
      },
    },
    paths: {
      '/healthz': { get: { summary: 'Liveness of the process', responses: { 200: json({ type: 'object' }) } } },
      '/readyz': { get: { summary: 'Readiness: Redis and PostgreSQL answer and the gateway is not draining', responses: { 200: json({ type: 'object' }), 503: json({ type: 'object' }, 'not ready or draining') } } },
      '/metrics': { get: { summary: 'Prometheus metrics', responses: { 200: { description: 'text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
      '/openapi.json': { get: { summary: 'This document', responses: { 200: json({ type: 'object' }) } } },
      '/v1/ingest': { get: { summary: 'Driver WebSocket (upgrade); scope ingest. Frames: one ping or an array, JSON text or MessagePack binary', security: secured, parameters: [q('token', { type: 'string' }, 'JWT when no Authorization header'), q('encoding', { type: 'string', enum: ['json', 'msgpack'] }, 'encoding of the welcome frame')], responses: { 101: { description: 'switching protocols' }, 401: errs[401], 403: errs[403], 503: err('shutting down (SHUTTING_DOWN)') } } },
      '/v1/pings': {
        post: {
          summary: 'Ingest over HTTP (one ping or a batch); scope ingest', security: secured,
          requestBody: { required: true, content: { 'application/json': { schema: { oneOf: [ref('Ping'), { type: 'array', items: ref('Ping'), maxItems: cfg.ingest.maxBatch }] } }, 'application/msgpack': { schema: { type: 'string', format: 'binary' } } } },
          responses: { 200: json(ref('PingsResult'), 'all accepted'), 207: json(ref('PingsResult'), 'some accepted, errors listed'), 400: json(ref('PingsResult'), 'none accepted (status of the first error) or BAD_FRAME'), 401: errs[401], 403: errs[403], 413: err(`body over ${cfg.ingest.maxPayloadBytes} bytes or more than ${cfg.ingest.maxBatch} pings`), 422: json(ref('PingsResult'), 'all implausible jumps'), 503: json(ref('PingsResult'), 'Redis unavailable: retry') },
        },
      },
      '/v1/nearby': {
        get: {
          summary: 'Live entities near a point, nearest first; scope query', security: secured,
          parameters: [q('lat', { type: 'number', minimum: -MAX_MERCATOR_LAT, maximum: MAX_MERCATOR_LAT }, 'latitude', true), q('lon', { type: 'number', minimum: -180, maximum: 180 }, 'longitude', true), q('radius', { type: 'number', exclusiveMinimum: true, minimum: 0, maximum: cfg.query.maxRadiusMeters }, 'metres', true), q('limit', { type: 'integer', minimum: 1, maximum: cfg.query.maxLimit, default: Math.min(50, cfg.query.maxLimit) }, 'max results'), ...filters],
          responses: { 200: json({ type: 'object', properties: { count: { type: 'integer' }, results: { type: 'array', items: ref('NearbyHit') } } }), ...errs },
        },
      },
      '/v1/within': {
        get: {
          summary: 'Live entities in a bbox or a tile; scope query', security: secured,
          parameters: [q('bbox', { type: 'string', example: '-8.7,41.1,-8.5,41.2' }, 'w,s,e,n in degrees (w > e crosses the antimeridian)'), q('tile', { type: 'string', example: '13/3900/3063' }, 'z/x/y instead of bbox'), q('limit', { type: 'integer', minimum: 1, maximum: cfg.query.maxLimit }, 'max results'), q('format', { type: 'string', enum: ['json', 'geojson'] }, 'geojson: a FeatureCollection'), ...filters],
          responses: { 200: json({ type: 'object', properties: { count: { type: 'integer' }, truncated: { type: 'boolean' }, results: { type: 'array', items: ref('LiveEntity') } } }), ...errs },
        },
      },
      '/v1/entities/{id}': {
        get: {
          summary: 'Latest live state of one entity of the caller\'s tenant; scope query', security: secured,
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { 200: json(ref('LiveEntity')), ...errs, 404: err('unknown or stale (NOT_FOUND)') },
        },
      },
      '/v1/entities/{id}/track': {
        get: {
          summary: 'Persisted path of an entity (PostGIS) as a GeoJSON Feature (LineString); scope query', security: secured,
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }, q('from', { type: 'string' }, 'ms since the epoch or ISO-8601 (default: to - 1 h)'), q('to', { type: 'string' }, 'ms since the epoch or ISO-8601 (default: now)'), q('limit', { type: 'integer', minimum: 1 }, 'max points (the most recent are kept; truncated is set)')],
          responses: { 200: { description: 'GeoJSON Feature', content: { 'application/geo+json': { schema: { type: 'object' } } } }, ...errs },
        },
      },
      '/v1/cells/{z}/{x}/{y}/stats': {
        get: {
          summary: 'Per 10 s window aggregates of a cell (z = ingest zoom) or a coarser tile (cells merged); scope query; alias /v1/tiles/{z}/{x}/{y}/stats', security: secured,
          parameters: [...['z', 'x', 'y'].map((n) => ({ name: n, in: 'path', required: true, schema: { type: 'integer', minimum: 0 } })), q('from', { type: 'string' }, 'ms since the epoch or ISO-8601'), q('to', { type: 'string' }, 'ms since the epoch or ISO-8601')],
          responses: { 200: json({ type: 'object' }), ...errs },
        },
      },
      '/v1/tiles/{z}/{x}/{y}/stats': { get: { summary: 'Alias of /v1/cells/{z}/{x}/{y}/stats', security: secured, parameters: ['z', 'x', 'y'].map((n) => ({ name: n, in: 'path', required: true, schema: { type: 'integer', minimum: 0 } })), responses: { 200: json({ type: 'object' }), ...errs } } },
      '/': { get: { summary: 'Live map page (also /map)', responses: { 200: { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } } } },
      '/map': { get: { summary: 'Live map page', responses: { 200: { description: 'HTML', content: { 'text/html': { schema: { type: 'string' } } } } } } },
      '/data/porto-roads.json': { get: { summary: 'Porto street network for the offline base layer (© OpenStreetMap contributors, ODbL)', responses: { 200: json({ type: 'object' }) } } },
      '/v1/stats': { get: { summary: 'Live figures for the map page (tenant-scoped)', security: secured, responses: { 200: json({ type: 'object' }), 401: errs[401] } } },
      '/v1/demo-token': { get: { summary: 'Development only: a subscribe+query token for tenant demo', responses: { 200: json({ type: 'object' }), 404: err('in production') } } },
      '/socket.io/': { get: { summary: 'socket.io (WebSocket transport) for map clients: tile rooms; scope subscribe', responses: { 101: { description: 'switching protocols' } } } },
      ...extraPaths,
    },
  };
}

/** GET /openapi.json */
export function registerOpenApiRoute(app: TemplatedApp, d: OpenApiDeps): void {
  const body = JSON.stringify(openApiDocument(d.cfg, d.extraPaths));
  app.get('/openapi.json', route(d.log, () => ({ status: 200, body })));
}

import { Counter, Gauge, Histogram, register } from 'prom-client';

function getOr<T>(name: string, make: () => T): T {
  return (register.getSingleMetric(name) as T | undefined) ?? make();
}

/** Tile-room metrics (prom-client global registry, declared once per process). */
export const roomsMetrics = {
  connections: getOr('geoflux_map_connections', () => new Gauge({
    name: 'geoflux_map_connections', help: 'Connected map clients (socket.io) on this gateway',
  })),
  frames: getOr('geoflux_room_frames_total', () => new Counter({
    name: 'geoflux_room_frames_total', help: 'Coalesced room frames (update/left) broadcast by this gateway',
  })),
  entityUpdates: getOr('geoflux_room_entity_updates_total', () => new Counter({
    name: 'geoflux_room_entity_updates_total', help: 'Entity updates carried by room frames broadcast by this gateway',
  })),
  coalesceDelay: getOr('geoflux_room_coalesce_delay_seconds', () => new Histogram({
    name: 'geoflux_room_coalesce_delay_seconds', help: 'From a live change offered to a room (after Redis) to its frame being broadcast',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5],
  })),
  pingToFrame: getOr('geoflux_room_ping_to_frame_seconds', () => new Histogram({
    name: 'geoflux_room_ping_to_frame_seconds',
    help: 'From this gateway receiving the oldest ping of a tile frame to the frame being broadcast (validation, Redis, coalescing): the server-side part of ping-to-map latency',
    buckets: [0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1],
  })),
  slowDisconnects: getOr('geoflux_map_slow_disconnects_total', () => new Counter({
    name: 'geoflux_map_slow_disconnects_total', help: 'Map clients disconnected because their send buffer exceeded rooms.slowClientBufferBytes',
  })),
};

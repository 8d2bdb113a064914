/**
 * The one owner of Redis key names. All keys of one ingest cell share the hash tag
 * `{tenant:z/x/y}`, so in Redis Cluster a cell (GEO set, last-seen set, stream) lives on
 * one shard and multi-key scripts over a cell are legal.
 */
export interface CellKeys {
  /** GEO set of live entities in the cell (member = entity id). */
  geo: string;
  /** Sorted set: member = entity id, score = last-seen ms (liveness). */
  seen: string;
  /** Stream of accepted pings (one entry each), consumed by workers. */
  stream: string;
}

export interface Keys {
  cell(tenant: string, cell: string): CellKeys;
  /**
   * Latest state of an entity (expires after the liveness TTL). Entity keys share the hash tag
   * `{tenant:eNN}` of their bucket (entityBucket), so one script may update every entity of a
   * bucket in one call and stay legal in Redis Cluster.
   */
  entity(tenant: string, id: string): string;
  /** Sorted set of cells that received pings: member `tenant|z/x/y`, score = last ping ms. */
  activeCells: string;
  /** Dead-letter stream for entries workers could not decode. */
  deadLetters: string;
  /** Sorted set of rooms with subscribers on some gateway: member = room name, score = expiry ms (src/rooms). */
  activeRooms: string;
  /** Pub/Sub channel announcing a room that just got its first subscriber on a gateway (src/rooms). */
  activeRoomsChannel: string;
  /** JSON status of a persistence worker (lag_ms, pending, rows/s), with a TTL (workers/status.ts). */
  workerStatus(instance: string): string;
  /** Pattern matching every workerStatus key (SCAN MATCH). */
  workerStatusPattern: string;
}

/** Entity buckets per tenant (hash tags of entity keys). */
export const ENTITY_BUCKETS = 64;

/** The bucket of an entity id: FNV-1a of its characters modulo ENTITY_BUCKETS. */
export function entityBucket(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % ENTITY_BUCKETS;
}

export function cellMember(tenant: string, cell: string): string {
  return `${tenant}|${cell}`;
}

export function parseCellMember(member: string): { tenant: string; cell: string } {
  const i = member.indexOf('|');
  return { tenant: member.slice(0, i), cell: member.slice(i + 1) };
}

export function createKeys(prefix: string): Keys {
  return {
    cell(tenant, cell) {
      const tag = `${prefix}c:{${tenant}:${cell}}`;
      return { geo: `${tag}:geo`, seen: `${tag}:seen`, stream: `${tag}:xs` };
    },
    entity: (tenant, id) => `${prefix}e:{${tenant}:e${entityBucket(id)}}:${id}`,
    activeCells: `${prefix}cells`,
    deadLetters: `${prefix}deadletters`,
    activeRooms: `${prefix}rooms`,
    activeRoomsChannel: `${prefix}rooms:new`,
    workerStatus: (instance) => `${prefix}worker:${instance}`,
    workerStatusPattern: `${prefix}worker:*`,
  };
}

/**
 * socket.io contract between the gateway and map clients (typed event maps).
 * Position payloads are MessagePack-encoded `EntityUpdate[]` (binary attachments).
 */
export interface EntityUpdate {
  id: string;
  lat: number;
  lon: number;
  ts: number;
  speed?: number;
  heading?: number;
  kind?: string;
  status?: string;
}

export interface SubscribeRequest {
  /** Tiles as `z/x/y`. */
  tiles: string[];
}

export type SubscribeAck =
  | { ok: true; tiles: string[] }
  | { ok: false; code: string; message: string };

export interface ServerToClientEvents {
  /** Live entities of one tile at subscribe time. */
  snapshot: (tile: string, payload: Uint8Array) => void;
  /** Changed entities of one tile (coalesced). */
  update: (tile: string, payload: Uint8Array) => void;
}

export interface ClientToServerEvents {
  subscribe: (req: SubscribeRequest, ack: (res: SubscribeAck) => void) => void;
  unsubscribe: (req: SubscribeRequest, ack: (res: SubscribeAck) => void) => void;
}

export const SOCKET_PATH = '/socket.io';

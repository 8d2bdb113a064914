/**
 * What the ingest/liveness side tells the fan-out side (tile rooms) after Redis has made a
 * change durable. Ingest owns producing these; rooms own turning them into frames.
 */
import type { EntityUpdate } from './rooms.js';

/** An entity's live state as map clients see it, plus its tenant. */
export interface LivePosition extends EntityUpdate {
  tenant: string;
}

export interface LiveMove {
  /** The entity's new live state. */
  now: LivePosition;
  /** Where it was before, when it was live already (lets rooms announce 'left' for tiles it moved out of). */
  prev?: { lat: number; lon: number };
  /** When the accepting gateway received the ping (ms epoch): rooms measure ping → frame from it. */
  rx?: number;
}

export interface LiveEvents {
  /** Pings that advanced live state (not older than the latest, not duplicates). */
  moved(moves: readonly LiveMove[]): void;
  /** Entities removed because they were silent longer than their TTL (last known position). */
  expired(gone: readonly LivePosition[]): void;
}

import type { ErrorCode } from './errors.js';

/** Frames the server sends on /v1/ingest (JSON text for JSON clients, MessagePack binary for binary clients). */
export interface AckFrame {
  type: 'ack';
  /** Highest `seq` among the pings of the acknowledged frame made durable in Redis, if any carried one. */
  seq: number | null;
  /** How many pings of the frame were accepted (made durable). */
  count: number;
  /** Number of the acknowledged frame on this connection (1, 2, …); every data frame gets exactly one ack, in order. */
  frame?: number;
}

export interface ErrorFrame {
  type: 'error';
  code: ErrorCode;
  message: string;
  /** Position of the rejected ping in its frame (batches), when the error is about one ping. */
  index?: number;
  id?: string;
  seq?: number;
  /** Number of the frame this error is about (1, 2, … per connection), when it is about a frame. */
  frame?: number;
}

export interface WelcomeFrame {
  type: 'welcome';
  tenant: string;
  sub: string;
  maxBatch: number;
  maxPayloadBytes: number;
}

export type ServerFrame = AckFrame | ErrorFrame | WelcomeFrame;

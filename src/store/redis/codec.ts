import { Packr } from 'msgpackr';
import type { AcceptedPing } from '../../protocol/ping.js';

/** MessagePack codec for what the gateway stores in Redis (stream entries, entity state). */
const packr = new Packr({ useRecords: false });

export function encodeAccepted(p: AcceptedPing): Buffer {
  return packr.pack(p);
}

export function decodeAccepted(buf: Buffer): AcceptedPing {
  return packr.unpack(buf) as AcceptedPing;
}

/** Stream entry field that holds the packed ping. */
export const STREAM_FIELD = 'p';

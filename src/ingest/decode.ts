import { Unpackr } from 'msgpackr';
import { AppError } from '../errors/app-error.js';

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });
const textDecoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes one ingest frame (binary: MessagePack, text: JSON) into raw ping candidates.
 * A frame is one ping object or an array of them. Throws AppError BAD_FRAME / BATCH_TOO_LARGE.
 */
export function decodeFrame(data: ArrayBuffer | Uint8Array, isBinary: boolean, maxBatch: number): unknown[] {
  let value: unknown;
  try {
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    value = isBinary ? unpackr.unpack(bytes) : JSON.parse(textDecoder.decode(bytes));
  } catch {
    throw new AppError('BAD_FRAME', isBinary ? 'binary frame is not valid MessagePack' : 'text frame is not valid JSON');
  }
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) throw new AppError('BAD_FRAME', 'empty batch');
  if (list.length > maxBatch) throw new AppError('BATCH_TOO_LARGE', `batch of ${list.length} exceeds the maximum of ${maxBatch}`);
  return list;
}

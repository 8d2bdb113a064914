import { Adapter, type BroadcastOptions } from 'socket.io-adapter';
import type { Namespace, Socket } from 'socket.io';
import type { TemplatedApp } from 'uWebSockets.js';

/**
 * socket.io's `attachApp` (socket.io/dist/uws.js) sends a frame to one room with one native
 * `app.publish` to the room's topic, then walks every socket of the room in JavaScript to find
 * the long-polling ones (which have no uWS topic) and writes to those one by one. That walk costs
 * per subscriber and per frame even when no client polls: in the fan-out benchmark it was the
 * biggest item of the relaying gateway's profile. This wraps the patched `broadcast`: while a
 * namespace has no long-polling socket, a single-room broadcast is only the native publish; with
 * any polling socket (polling is accepted as a fallback) socket.io's own code runs unchanged.
 *
 * Call after `io.attachApp(app)` (which installs the patch this wraps), with that app.
 */
export function publishNatively(nsp: Namespace, app: TemplatedApp): void {
  const polling = new Set<string>();
  const track = (socket: Socket): void => {
    if (socket.conn.transport.name === 'websocket') return;
    polling.add(socket.id);
    socket.conn.once('upgrade', () => polling.delete(socket.id));
    socket.once('disconnect', () => polling.delete(socket.id));
  };
  nsp.on('connection', track);
  namespaces.set(nsp, { app, polling });
  installOnce();
  deliverLocallyFirst(nsp);
}

/**
 * socket.io's cluster adapter hands a room frame to this gateway's own subscribers only once
 * Redis has answered its `SPUBLISH`, and that publish shares the data connection with the
 * pipelined ingest scripts, so local subscribers wait for a Redis round trip behind them. The
 * answer only matters for connection-state recovery (it carries the stream offset stored with
 * the packet), which the rooms do not use: here local subscribers get the frame first, then it
 * is published for the other gateways, and the adapter's own local delivery after the publish
 * is skipped for that packet. Same frames, same order per gateway.
 */
function deliverLocallyFirst(nsp: Namespace): void {
  const serverOpts = (nsp.server as unknown as { opts: { connectionStateRecovery?: unknown } }).opts;
  if (serverOpts.connectionStateRecovery) return; // the offset must be in the packet before anyone gets it
  const adapter = nsp.adapter as unknown as { broadcast(packet: object, opts: BroadcastOptions): unknown };
  const publishThenDeliver = adapter.broadcast;
  adapter.broadcast = function localFirst(this: Adapter, packet: object, opts: BroadcastOptions): unknown {
    if (opts.flags?.local) return publishThenDeliver.call(this, packet, opts);
    Adapter.prototype.broadcast.call(this, packet as never, opts);
    delivered.add(packet);
    return publishThenDeliver.call(this, packet, opts);
  };
}

interface NativeState { app: TemplatedApp; polling: ReadonlySet<string> }
interface AdapterInternals { nsp: Namespace; encoder: { encode(packet: unknown): (string | Buffer)[] } }

const namespaces = new WeakMap<Namespace, NativeState>();
/** Packets already given to this gateway's subscribers (deliverLocallyFirst). */
const delivered = new WeakSet<object>();
/** socket.io's Engine.IO/topic conventions (socket.io/dist/uws.js). */
const SEPARATOR = '\x1f';
const MESSAGE = '4';
let installed = false;

function installOnce(): void {
  if (installed) return;
  installed = true;
  const patched = Adapter.prototype.broadcast;
  Adapter.prototype.broadcast = function nativeBroadcast(this: Adapter, packet: { nsp?: string }, opts: BroadcastOptions): void {
    if (delivered.delete(packet)) return;
    const self = this as unknown as AdapterInternals;
    const st = namespaces.get(self.nsp);
    if (!st || st.polling.size > 0 || opts.rooms.size > 1 || (opts.except?.size ?? 0) > 0) return patched.call(this, packet as never, opts);
    packet.nsp = self.nsp.name;
    const topic = opts.rooms.size === 0 ? self.nsp.name : `${self.nsp.name}${SEPARATOR}${opts.rooms.keys().next().value as string}`;
    for (const p of self.encoder.encode(packet)) {
      if (typeof p === 'string') st.app.publish(topic, MESSAGE + p, false);
      else st.app.publish(topic, p, true);
    }
  };
}

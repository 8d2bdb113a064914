/**
 * A bare uWebSockets.js echo server (the same native build the gateway loads): the ceiling
 * for small WebSocket frames on this machine. Prints {"port":N} once listening.
 */
import { loadUws } from '../../src/gateway/uws.js';

const { uws } = loadUws();
const app = uws.App();
app.ws('/*', {
  maxPayloadLength: 64 * 1024,
  idleTimeout: 60,
  message: (ws, msg, isBinary) => { ws.send(msg, isBinary); },
});
app.listen('127.0.0.1', 0, (ls) => {
  if (!ls) { process.stderr.write('echo server could not listen\n'); process.exit(1); }
  process.stdout.write(JSON.stringify({ msg: 'echo listening', port: uws.us_socket_local_port(ls) }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));

import net from 'node:net';

/** A TCP port on 127.0.0.1 free right now (for listeners that cannot take port 0, e.g. the worker's /metrics). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

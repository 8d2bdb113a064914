/**
 * The socket.io packet format of the tile rooms, shared by the gateway and every map client:
 * socket.io-msgpack-parser (the socket.io project's own MessagePack parser). Each event is one
 * binary WebSocket message; with socket.io's default parser an event with a binary payload (every
 * room frame) is two (a text header with a placeholder, then the attachment), which every
 * subscriber has to parse and reassemble. Measured with the gateway's uWS stack
 * (load-tests/map-client-cost.ts): about 10 % less client CPU per frame (docs/rooms.md,
 * "Wire format").
 *
 * Both ends must use it: a client with the default parser cannot decode the gateway's packets
 * (and the gateway closes a connection whose packets it cannot decode). Browsers load
 * `/vendor/socket.io/socket.io.msgpack.min.js`, socket.io-client's build with this parser.
 */
import msgpackParser from 'socket.io-msgpack-parser';

export const roomsParser = msgpackParser;

export * from './errors.js';
export * from './ping.js';
export * from './messages.js';
export * from './rooms.js';

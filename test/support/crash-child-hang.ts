/**
 * A server whose shutdown (begun by SIGTERM) breaks with an uncaught exception and never settles
 * (for test/integration/crash-shutdown.test.ts): it must still exit, with code 70.
 */
import { untilSignal } from '../../src/server/run.js';

const close = () => new Promise<void>(() => {
  setTimeout(() => {
    throw new Error('boom inside close');
  }, 50);
});
void untilSignal({ close }, undefined, { fatalShutdownMs: 1000 });
setInterval(() => {}, 1000);
process.stdout.write('ready\n');

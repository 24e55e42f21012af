/**
 * The guardrail parser thread (started by ParsePool): parses the statements it is sent with
 * libpg-query and answers each with what the guardrails found in it, so that a long statement
 * never stalls the event loop that relays every session and cuts them off on time.
 */
import { parentPort } from 'node:worker_threads';
import { analyseText, loadGuardrailParser, type Findings } from './guardrails.js';
import { READY } from './parse-pool.js';

export interface ParseRequest {
  readonly id: number;
  readonly sql: string;
}
export interface ParseReply {
  readonly id: number;
  readonly findings: Findings;
  /** The parse's own time, in milliseconds. */
  readonly ms: number;
}

const port = parentPort;
if (port) {
  void loadGuardrailParser().then(() => {
    port.on('message', (req: ParseRequest) => {
      const started = performance.now();
      const findings = analyseText(req.sql);
      const reply: ParseReply = { id: req.id, findings, ms: performance.now() - started };
      port.postMessage(reply);
    });
    port.postMessage(READY);
  });
}

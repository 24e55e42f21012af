import type { Worker } from 'node:worker_threads';
import { newModuleWorker } from '../../util/worker.js';
import { ParseFailed, type Findings, type StatementParser } from './guardrails.js';
import type { ParseReply, ParseRequest } from './parse-worker.js';

/** What the parser thread sends once it has loaded the parser: statements go to it only then, so their time limit is the parse's own. */
export const READY = 'ready';

interface Job {
  readonly id: number;
  readonly sql: string;
  readonly resolve: (r: { findings: Findings; ms: number }) => void;
  readonly reject: (e: Error) => void;
}

/**
 * Parses guardrail statements on a parser thread (parse-worker.ts), one at a time in the order
 * asked. A parse that takes longer than `timeoutMs` (or a thread that dies) fails that statement
 * (the checker then denies it as unparsable) and the thread is replaced for the next one.
 */
export class ParsePool implements StatementParser {
  #worker: Worker | undefined;
  /** The thread has loaded the parser (READY): statements go to it from then on. */
  #ready = false;
  readonly #queue: Job[] = [];
  #current: { job: Job; timer: NodeJS.Timeout; worker: Worker; started: number } | undefined;
  #nextId = 1;
  #paused = false;
  #closed = false;

  constructor(readonly timeoutMs = 5_000) {}

  findings(sql: string): Promise<{ findings: Findings; ms: number }> {
    if (this.#closed) return Promise.reject(new Error('the statement parser is closed'));
    return new Promise((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, sql, resolve, reject });
      this.#next();
    });
  }

  /** Statements asked for and not yet answered. */
  get waiting(): number {
    return this.#queue.length + (this.#current ? 1 : 0);
  }

  /** Holds every parse not yet started until resume() (tests: a statement whose check is slow). */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#next();
  }

  /** Fails what waits and stops the thread. */
  async close(): Promise<void> {
    this.#closed = true;
    const e = new ParseFailed('the statement parser is closed', 0);
    for (const j of this.#queue.splice(0)) j.reject(e);
    this.#fail(e);
    const w = this.#worker;
    this.#worker = undefined;
    if (w) await w.terminate();
  }

  #next(): void {
    if (this.#current || this.#paused || this.#closed || this.#queue.length === 0) return;
    if (!this.#worker) {
      try {
        this.#worker = this.#start();
      } catch (e) {
        // No thread could be started (out of threads or memory): what waits fails (it is denied).
        const err = new ParseFailed(`the statement parser could not start (${e instanceof Error ? e.message : String(e)})`, 0);
        for (const j of this.#queue.splice(0)) j.reject(err);
        return;
      }
    }
    if (!this.#ready) return; // on READY
    const worker = this.#worker;
    const job = this.#queue.shift() as Job;
    const started = performance.now();
    const timer = setTimeout(() => {
      this.#fail(new ParseFailed(`checking it took over ${this.timeoutMs / 1000} s`, performance.now() - started));
      void this.#replace(worker);
    }, this.timeoutMs);
    timer.unref();
    this.#current = { job, timer, worker, started };
    const req: ParseRequest = { id: job.id, sql: job.sql };
    worker.postMessage(req);
  }

  #start(): Worker {
    const w = newModuleWorker(import.meta.url, 'parse-worker', undefined);
    this.#ready = false;
    w.unref();
    w.on('message', (r: ParseReply | typeof READY) => {
      if (r === READY) {
        if (this.#worker === w) this.#ready = true;
        this.#next();
        return;
      }
      const c = this.#current;
      if (!c || c.job.id !== r.id) return;
      clearTimeout(c.timer);
      this.#current = undefined;
      c.job.resolve({ findings: r.findings, ms: r.ms });
      this.#next();
    });
    const gone = (why: string): void => {
      if (this.#worker === w) this.#worker = undefined;
      const c = this.#current;
      if (c?.worker === w) this.#fail(new ParseFailed(`the statement parser failed (${why})`, performance.now() - c.started));
      this.#next();
    };
    w.on('error', (e) => gone(e.message));
    w.on('exit', (code) => gone(`exit ${code}`));
    return w;
  }

  /** Fails the statement being parsed, if any. */
  #fail(e: Error): void {
    const c = this.#current;
    if (!c) return;
    clearTimeout(c.timer);
    this.#current = undefined;
    c.job.reject(e);
  }

  async #replace(w: Worker): Promise<void> {
    if (this.#worker === w) this.#worker = undefined;
    this.#next(); // starts the next thread; its first statement waits for it to load the parser
    await w.terminate();
  }
}

import type { Worker } from 'node:worker_threads';
import { newModuleWorker } from '../../util/worker.js';
import { ParseFailed, type Findings, type StatementParser } from './guardrails.js';
import type { ParseReply, ParseRequest } from './parse-worker.js';

/** What the parser thread sends once it has loaded the parser: statements go to it only then, so their time limit is the parse's own. */
export const READY = 'ready';

interface Job {
  readonly id: number;
  readonly sql: string;
  readonly wanted: () => boolean;
  readonly resolve: (r: { findings: Findings; ms: number }) => void;
  readonly reject: (e: Error) => void;
}

/** Whether anyone still waits for the job (a `wanted` that throws: nobody). */
function stillWanted(job: Job): boolean {
  try {
    return job.wanted();
  } catch {
    return false;
  }
}

/** A thread that has not loaded the parser after this long is given up (its statements fail). */
const BOOT_TIMEOUT_MS = 10_000;
/** After a thread failed to start, statements fail at once for this long rather than start thread after thread. */
const BOOT_BACKOFF_MS = 1_000;

/**
 * Parses guardrail statements on a parser thread (parse-worker.ts), one at a time, taking turns
 * between owners (the users whose sessions asked) and in the order asked within each: one user's
 * many sessions each sending a slow new statement (up to the time limit each) delay another
 * user's statement by one of them, not by all. A statement nobody waits for any more (its
 * sessions ended) is skipped. A parse that takes
 * longer than `timeoutMs`, or a thread that dies, fails that statement (the checker then denies
 * it as unparsable) and the thread is replaced for the next one. A thread that cannot start (it
 * dies or hangs before it has loaded the parser) fails what waits, and for a second after that
 * statements fail at once, so a broken parser never holds sessions or spins starting threads.
 */
export class ParsePool implements StatementParser {
  #worker: Worker | undefined;
  /** The thread has loaded the parser (READY): statements go to it from then on. */
  #ready = false;
  #bootTimer: NodeJS.Timeout | undefined;
  #bootFailedAt = -Infinity;
  /** Jobs waiting, by owner; the first owner is served next, then goes to the back (round robin). */
  readonly #queues = new Map<string, Job[]>();
  #queued = 0;
  #current: { job: Job; timer: NodeJS.Timeout; worker: Worker; started: number } | undefined;
  #nextId = 1;
  #paused = false;
  #closed = false;

  constructor(readonly timeoutMs = 5_000) {}

  findings(sql: string, wanted: () => boolean = () => true, owner = ''): Promise<{ findings: Findings; ms: number }> {
    if (this.#closed) return Promise.reject(new ParseFailed('the statement parser is closed', 0));
    return new Promise((resolve, reject) => {
      const job = { id: this.#nextId++, sql, wanted, resolve, reject };
      const jobs = this.#queues.get(owner);
      if (jobs) jobs.push(job);
      else this.#queues.set(owner, [job]);
      this.#queued++;
      this.#next();
    });
  }

  /** Statements asked for and not yet answered. */
  get waiting(): number {
    return this.#queued + (this.#current ? 1 : 0);
  }

  /** The job to start next, dropping (rejecting) those nobody waits for any more; it stays queued. */
  #front(): Job | undefined {
    for (const [owner, jobs] of this.#queues) {
      while (jobs.length > 0 && !stillWanted(jobs[0] as Job)) {
        this.#queued--;
        (jobs.shift() as Job).reject(new ParseFailed('nobody waits for it any more', 0));
      }
      if (jobs.length > 0) return jobs[0];
      this.#queues.delete(owner);
    }
    return undefined;
  }

  /** Takes the front job (see #front); its owner goes to the back of the turn. */
  #take(): Job {
    const [owner, jobs] = this.#queues.entries().next().value as [string, Job[]];
    const job = jobs.shift() as Job;
    this.#queued--;
    this.#queues.delete(owner);
    if (jobs.length > 0) this.#queues.set(owner, jobs);
    return job;
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
    this.#failQueue(e);
    this.#fail(e);
    const w = this.#worker;
    this.#worker = undefined;
    clearTimeout(this.#bootTimer);
    if (w) await w.terminate();
  }

  #next(): void {
    if (this.#current || this.#paused || this.#closed) return;
    // Statements whose sessions all ended: nobody needs them parsed.
    if (this.#front() === undefined) return;
    if (!this.#worker) {
      if (performance.now() - this.#bootFailedAt < BOOT_BACKOFF_MS) return this.#failQueue(new ParseFailed('the statement parser could not start', 0));
      try {
        this.#worker = this.#start();
      } catch (e) {
        // No thread could be started (out of threads or memory).
        return this.#bootFailed(undefined, e instanceof Error ? e.message : String(e));
      }
    }
    if (!this.#ready) return; // on READY
    const worker = this.#worker;
    const job = this.#take();
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
    this.#bootTimer = setTimeout(() => {
      if (this.#worker === w && !this.#ready) {
        this.#bootFailed(w, `it did not start within ${BOOT_TIMEOUT_MS / 1000} s`);
        void w.terminate();
      }
    }, BOOT_TIMEOUT_MS);
    this.#bootTimer.unref();
    w.on('message', (r: ParseReply | typeof READY) => {
      if (r === READY) {
        if (this.#worker !== w) return;
        clearTimeout(this.#bootTimer);
        this.#ready = true;
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
      if (this.#worker === w && !this.#ready) return this.#bootFailed(w, why);
      if (this.#worker === w) this.#worker = undefined;
      const c = this.#current;
      if (c?.worker === w) this.#fail(new ParseFailed(`the statement parser failed (${why})`, performance.now() - c.started));
      this.#next();
    };
    w.on('error', (e) => gone(e.message));
    w.on('exit', (code) => gone(`exit ${code}`));
    return w;
  }

  /** The thread `w` (undefined: none could be made) never loaded the parser: what waits fails, and new threads wait a while. */
  #bootFailed(w: Worker | undefined, why: string): void {
    if (w !== undefined && this.#worker !== w) return;
    this.#worker = undefined;
    clearTimeout(this.#bootTimer);
    this.#bootFailedAt = performance.now();
    this.#failQueue(new ParseFailed(`the statement parser could not start (${why})`, 0));
  }

  #failQueue(e: Error): void {
    const all = [...this.#queues.values()].flat();
    this.#queues.clear();
    this.#queued = 0;
    for (const j of all) j.reject(e);
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

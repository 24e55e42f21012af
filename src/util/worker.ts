import { Worker } from 'node:worker_threads';

/**
 * Starts the worker thread whose module is `name` (without extension) beside `moduleUrl` (the
 * caller's import.meta.url): the built `.js` file, or, when the caller itself runs from TypeScript
 * sources (tests, benches), the `.ts` file loaded through tsx.
 */
export function newModuleWorker(moduleUrl: string, name: string, workerData: unknown): Worker {
  if (!moduleUrl.endsWith('.ts')) return new Worker(new URL(`./${name}.js`, moduleUrl), { workerData });
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL(`./${name}.ts`, moduleUrl).href;
  const boot = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(boot, { eval: true, workerData });
}

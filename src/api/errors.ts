import type { FastifyError, FastifyInstance } from 'fastify';
import { AppError, ERROR_CODES, type ErrorCode } from '../domain/errors.js';

export interface ErrorPayload {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

export function errorPayload(code: ErrorCode, message: string, details?: Record<string, unknown>): ErrorPayload {
  return { error: details ? { code, message, details } : { code, message } };
}

/** Every failure leaves as JSON {error:{code,message}} with the right status; internals never leak. */
export function installErrorHandling(app: FastifyInstance, log: (line: string) => void): void {
  app.setErrorHandler((err: FastifyError | AppError | Error, _req, reply) => {
    if (err instanceof AppError) {
      return reply.status(err.status).send(errorPayload(err.code, err.message, err.details));
    }
    const fe = err as FastifyError;
    if (fe.validation) {
      const first = fe.validation[0];
      const where = `${fe.validationContext ?? 'input'}${first?.instancePath ?? ''}`.replace(/\//g, '.');
      const extra = first?.keyword === 'additionalProperties'
        ? ` (unknown field ${JSON.stringify((first.params as { additionalProperty?: string }).additionalProperty)})`
        : '';
      // A pattern's own text means nothing to a caller (a reason's is a long character class).
      const what = first?.keyword === 'pattern'
        ? ((first as { parentSchema?: { description?: string } }).parentSchema?.description ?? 'has characters or a form that is not allowed here')
        : (first?.message ?? 'is invalid');
      return reply.status(400).send(errorPayload('bad_request', `${where} ${what}${extra}`));
    }
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      const code: ErrorCode = fe.statusCode === 404 ? 'not_found' : fe.statusCode === 401 ? 'unauthenticated' : 'bad_request';
      return reply.status(ERROR_CODES[code]).send(errorPayload(code, fe.message));
    }
    log(`internal error: ${err.stack ?? err.message}`);
    return reply.status(500).send(errorPayload('internal', 'internal error (see the server log)'));
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send(errorPayload('not_found', `no route ${req.method} ${req.url.split('?')[0]}`));
  });
}

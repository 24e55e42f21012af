import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeWebStream } from 'node:stream/web';
import { Option, type Command } from 'commander';
import { auditTypeArg, checkpointArg, grantIdArg, pastTimeArg, positiveIntArg, requestIdArg, textArg } from './args.js';
import { cell, json, printable, relative, table } from './format.js';
import { CliError } from './io.js';
import { cliContext } from './program.js';
import type { AuditEvent, VerifyOutcome } from './views.js';

function dataSummary(data: Record<string, unknown>): string {
  return Object.entries(data)
    .filter(([, v]) => v !== null && v !== undefined && typeof v !== 'object')
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ');
}

interface SubjectFilters {
  grant?: string;
  request?: string;
}

/** audit (query), audit verify, audit export, audit reveal. */
export function auditCommands(program: Command): void {
  const now = () => cliContext(program).now();
  const audit = program.command('audit').description('the audit log (admins): query (default), verify, export, reveal');
  // The query is a default subcommand, so `audit --type X` and `audit export --type X` each own their options.
  audit.command('list', { isDefault: true })
    .description('query the audit log (the default: `hallpass audit --since 1h`)')
    .option('--since <time>', 'from this time: ISO, or a duration ago such as 1h', pastTimeArg(now))
    .option('--until <time>', 'up to this time: ISO, or a duration ago', pastTimeArg(now))
    .option('--type <type>', 'event type, or a family such as grant.*', auditTypeArg)
    .option('--grant <id>', "one grant's events: its lifecycle and every gateway statement run under it", grantIdArg)
    .option('--request <id>', "one request's events", requestIdArg)
    .option('--limit <n>', 'at most this many events (default 100)', positiveIntArg(5000))
    .option('--json', 'print the API response as JSON')
    .action(async (o: SubjectFilters & { since?: string; until?: string; type?: string; limit?: number; json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const res = await ctx.client().get<{ events: AuditEvent[] }>('/api/v1/audit', {
        since: o.since, until: o.until, type: o.type, grant: o.grant, request: o.request, limit: o.limit,
      });
      if (o.json) return ctx.out(json(res));
      ctx.out(table(['seq', 'when', 'type', 'actor', 'subject', 'details'], res.events.map((e) => [
        String(e.seq), relative(e.at, ctx.now()), e.type, cell(e.actor, 24), e.grantId ?? e.requestId ?? '-', cell(dataSummary(e.data), 60),
      ])));
    });

  audit.command('verify')
    .description('check the hash chain of the whole audit log; exit 1 when it is broken')
    .option('--checkpoint <seq:hash>', 'a head an earlier verify printed, kept elsewhere: the log must still hold that event with that hash', checkpointArg)
    .option('--json', 'print the API response as JSON')
    .action(async (o: { json?: boolean; checkpoint?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const r = await ctx.client().get<VerifyOutcome>('/api/v1/audit/verify', { checkpoint: o.checkpoint });
      if (o.json) ctx.out(json(r));
      if (!r.ok) {
        throw new CliError(`audit chain BROKEN at seq ${r.firstBad.seq} (${r.firstBad.reason}): ${r.message}; ${r.count} events before it verified`);
      }
      if (!o.json) {
        ctx.out(`audit chain ok: ${r.count} events${o.checkpoint ? `, still holding checkpoint ${o.checkpoint.split(':')[0]}` : ''}\n`);
        // The whole head, to keep somewhere the database's writers cannot reach (--checkpoint later).
        ctx.out(`checkpoint: ${r.headSeq}:${r.headHash}\n`);
      }
    });

  audit.command('reveal')
    .description('open the secrets sealed in one event\'s SQL (passwords written into statements); the reveal is itself audited')
    .argument('<seq>', 'the event (its seq)', positiveIntArg(Number.MAX_SAFE_INTEGER))
    .requiredOption('--reason <text>', 'why (recorded in the audit log before anything is shown)', textArg)
    .option('--json', 'print the API response as JSON')
    .action(async (seq: number, o: { reason: string; json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const r = await ctx.client().post<{ event: AuditEvent; opened: number; failed: number }>(`/api/v1/audit/${seq}/reveal`, { reason: o.reason });
      if (o.json) return ctx.out(json(r));
      ctx.out(`${r.event.seq} ${r.event.at} ${printable(r.event.type)} ${printable(r.event.actor)}: ${r.opened} sealed span(s) opened${r.failed ? `, ${r.failed} could not be (another master key, or not sealed by hallpass)` : ''}\n`);
      ctx.out(`${json(r.event.data)}`);
    });

  audit.command('export')
    .description('stream the audit log as JSON lines or CSV')
    .addOption(new Option('--format <format>', 'jsonl (verifiable offline) or csv').choices(['jsonl', 'csv']).makeOptionMandatory())
    .option('--output <file>', 'write to this file instead of stdout (created 0600)')
    .option('--since <time>', 'from this time: ISO, or a duration ago', pastTimeArg(now))
    .option('--until <time>', 'up to this time: ISO, or a duration ago', pastTimeArg(now))
    .option('--type <type>', 'event type, or a family such as grant.*', auditTypeArg)
    .option('--grant <id>', "one grant's events", grantIdArg)
    .option('--request <id>', "one request's events", requestIdArg)
    .action(async (o: SubjectFilters & { format: string; output?: string; since?: string; until?: string; type?: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const body = await ctx.client().stream('/api/v1/audit/export', {
        format: o.format, since: o.since, until: o.until, type: o.type, grant: o.grant, request: o.request,
      });
      const source = Readable.fromWeb(body as NodeWebStream<Uint8Array>);
      if (o.output) {
        await pipeline(source, createWriteStream(o.output, { mode: 0o600 }));
        ctx.err(`audit log written to ${o.output}\n`);
        return;
      }
      const decoder = new TextDecoder();
      for await (const chunk of source) ctx.out(decoder.decode(chunk as Uint8Array, { stream: true }));
      const rest = decoder.decode();
      if (rest) ctx.out(rest);
    });
}

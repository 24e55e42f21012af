import { Option, type Command } from 'commander';
import { parseDuration } from '../domain/duration.js';
import { durationArg, futureTimeArg, requestIdArg, textArg } from './args.js';
import { fetchCredentials, formatOption, renderCredentials, type CredentialFormat } from './credentials.js';
import { json } from './format.js';
import { usageError } from './io.js';
import { cliContext } from './program.js';
import { outcomeText, requestLine, requestsTable } from './summaries.js';
import type { Request, RequestOutcome } from './views.js';
import { waitForActiveGrant } from './wait.js';

interface RequestOpts {
  role: string; for?: string; reason: string; ticket?: string; start?: string; wait?: boolean; timeout?: string;
  breakGlass?: boolean; format: CredentialFormat; viaGateway?: boolean; json?: boolean; oidcTokenEnv?: string;
}

/** request, requests, approve, deny, cancel. */
export function requestCommands(program: Command): void {
  const now = () => cliContext(program).now();

  program.command('request')
    .description('ask for time-boxed access to a resource at a role')
    .argument('<resource>', 'resource name (see `hallpass resources`)')
    .requiredOption('--role <role>', 'role on the resource (e.g. read)')
    .option('--for <duration>', 'how long, e.g. 30m, 1h (default: the policy\'s)', durationArg)
    .requiredOption('--reason <text>', 'why you need it (recorded in the audit log)', textArg)
    .option('--ticket <id>', 'ticket / incident id', textArg)
    .option('--start <time>', 'start later: an ISO time or +10m', futureTimeArg(now))
    .option('--break-glass', 'emergency access without approval (reviewed afterwards)')
    .option('--wait', 'wait until approved and active, then print the credentials')
    .option('--timeout <duration>', 'with --wait: give up after this long', durationArg)
    .addOption(formatOption())
    .option('--via-gateway', 'with --wait: credentials for the hallpass gateway')
    .option('--json', 'print the API response as JSON')
    .option('--oidc-token-env <var>', 'act as a workload: send the OIDC token (JWT) in this env var, e.g. from a CI pipeline')
    .action(async (resource: string, o: RequestOpts, cmd: Command) => {
      const ctx = cliContext(cmd);
      if (o.oidcTokenEnv) {
        const jwt = ctx.io.env[o.oidcTokenEnv];
        if (!jwt) throw usageError(`--oidc-token-env: environment variable ${o.oidcTokenEnv} is not set`);
        cmd.parent?.setOptionValue('token', jwt); // every call of this run (request, wait, credentials) uses it
      }
      if (o.timeout && !o.wait) throw usageError('--timeout only makes sense with --wait');
      const client = ctx.client();
      const outcome = await client.post<RequestOutcome>('/api/v1/requests', {
        resource, role: o.role, reason: o.reason,
        ...(o.for ? { duration: o.for } : {}), ...(o.ticket ? { ticket: o.ticket } : {}),
        ...(o.start ? { startAt: o.start } : {}), ...(o.breakGlass ? { breakGlass: true } : {}),
      });
      if (!o.wait) {
        ctx.out(o.json ? json(outcome) : outcomeText(outcome, ctx.now()));
        return;
      }
      const timeout = o.timeout === undefined ? undefined : (parseDuration(o.timeout) ?? 0) * 1000;
      const grant = await waitForActiveGrant(ctx, outcome, timeout);
      const creds = await fetchCredentials(client, grant.id, o.viaGateway ? 'gateway' : 'direct', ctx.io.env);
      ctx.out(renderCredentials(creds, o.json ? 'json' : o.format));
    });

  program.command('requests')
    .description('list your requests and the pending ones you may approve')
    .option('--pending', 'only pending requests')
    .option('--all', 'everyone\'s requests (admins)')
    .option('--json', 'print the API response as JSON')
    .option('--ids', 'print only the request ids, newest first, one per line (for scripts)')
    .action(async (o: { pending?: boolean; all?: boolean; json?: boolean; ids?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const res = await ctx.client().get<{ requests: Request[] }>('/api/v1/requests', {
        status: o.pending ? 'pending' : undefined, scope: o.all ? 'all' : undefined,
      });
      ctx.out(o.json ? json(res) : o.ids ? res.requests.map((r) => r.id).join('\n') : requestsTable(res.requests, ctx.now()));
    });

  program.command('approve')
    .description('approve a pending request (you cannot approve your own)')
    .argument('<id>', 'request id', requestIdArg)
    .option('--for <duration>', 'grant less time than asked', durationArg)
    .option('--comment <text>', 'a note recorded with the approval', textArg)
    .option('--json', 'print the API response as JSON')
    .action(async (id: string, o: { for?: string; comment?: string; json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const outcome = await ctx.client().post<RequestOutcome>(`/api/v1/requests/${id}/approve`, {
        ...(o.for ? { duration: o.for } : {}), ...(o.comment ? { comment: o.comment } : {}),
      });
      ctx.out(o.json ? json(outcome) : outcomeText(outcome, ctx.now()));
    });

  program.command('deny')
    .description('deny a pending request')
    .argument('<id>', 'request id', requestIdArg)
    .requiredOption('--reason <text>', 'why (the requester sees it)', textArg)
    .option('--json', 'print the API response as JSON')
    .action(async (id: string, o: { reason: string; json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const r = await ctx.client().post<Request>(`/api/v1/requests/${id}/deny`, { reason: o.reason });
      ctx.out(o.json ? json(r) : `${requestLine(r, ctx.now())}\n`);
    });

  program.command('cancel')
    .description('withdraw your pending request')
    .argument('<id>', 'request id', requestIdArg)
    .addOption(new Option('--json', 'print the API response as JSON'))
    .action(async (id: string, o: { json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const r = await ctx.client().post<Request>(`/api/v1/requests/${id}/cancel`);
      ctx.out(o.json ? json(r) : `${requestLine(r, ctx.now())}\n`);
    });
}

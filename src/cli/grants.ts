import type { Command } from 'commander';
import { durationArg, grantIdArg, textArg } from './args.js';
import { fetchCredentials, formatOption, renderCredentials, type CredentialFormat } from './credentials.js';
import { json } from './format.js';
import { cliContext } from './program.js';
import { grantLine, grantsTable, outcomeText } from './summaries.js';
import type { Grant, RequestOutcome } from './views.js';

/** grants, extend, revoke, creds. */
export function grantCommands(program: Command): void {
  program.command('grants')
    .description('list your grants')
    .option('--active', 'only live grants (scheduled, active, being revoked)')
    .option('--all', 'everyone\'s grants (admins)')
    .option('--json', 'print the API response as JSON')
    .option('--ids', 'print only the grant ids, newest first, one per line (for scripts)')
    .action(async (o: { active?: boolean; all?: boolean; json?: boolean; ids?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const res = await ctx.client().get<{ grants: Grant[] }>('/api/v1/grants', {
        active: o.active ? true : undefined, scope: o.all ? 'all' : undefined,
      });
      ctx.out(o.json ? json(res) : o.ids ? res.grants.map((g) => g.id).join('\n') : grantsTable(res.grants, ctx.now()));
    });

  program.command('extend')
    .description('ask for more time on an active grant (decided by policy like a new request)')
    .argument('<grant>', 'grant id', grantIdArg)
    .requiredOption('--by <duration>', 'how much longer, e.g. 15m', durationArg)
    .requiredOption('--reason <text>', 'why', textArg)
    .option('--ticket <id>', 'ticket / incident id', textArg)
    .option('--json', 'print the API response as JSON')
    .action(async (id: string, o: { by: string; reason: string; ticket?: string; json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const outcome = await ctx.client().post<RequestOutcome>(`/api/v1/grants/${id}/extend`, {
        by: o.by, reason: o.reason, ...(o.ticket ? { ticket: o.ticket } : {}),
      });
      ctx.out(o.json ? json(outcome) : outcomeText(outcome, ctx.now()));
    });

  program.command('revoke')
    .description('end a grant now: drop the credential and cut its sessions')
    .argument('<grant>', 'grant id', grantIdArg)
    .option('--reason <text>', 'why (recorded in the audit log)', textArg)
    .option('--json', 'print the API response as JSON')
    .action(async (id: string, o: { reason?: string; json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const g = await ctx.client().post<Grant>(`/api/v1/grants/${id}/revoke`, o.reason ? { reason: o.reason } : {});
      ctx.out(o.json ? json(g) : `${grantLine(g, ctx.now())}\n`);
    });

  program.command('creds')
    .description('print the credentials of your active grant')
    .argument('<grant>', 'grant id', grantIdArg)
    .addOption(formatOption())
    .option('--via-gateway', 'credentials for the hallpass gateway instead of the target itself')
    .option('--json', 'same as --format json')
    .action(async (id: string, o: { format: CredentialFormat; viaGateway?: boolean; json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const creds = await fetchCredentials(ctx.client(), id, o.viaGateway ? 'gateway' : 'direct', ctx.io.env);
      ctx.out(renderCredentials(creds, o.json ? 'json' : o.format));
    });
}

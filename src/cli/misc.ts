import type { Command } from 'commander';
import { reviewIdArg, textArg } from './args.js';
import { cell, json, relative, table } from './format.js';
import { cliContext } from './program.js';
import type { Me, Resource, Review } from './views.js';

/** resources, me, reviews, review close. */
export function miscCommands(program: Command): void {
  program.command('resources')
    .description('list the resources and roles you can request')
    .option('--json', 'print the API response as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const res = await ctx.client().get<{ resources: Resource[] }>('/api/v1/resources');
      if (o.json) return ctx.out(json(res));
      ctx.out(table(['name', 'kind', 'roles', 'labels', 'description'], res.resources.map((r) => [
        r.name, r.kind, r.roles.map((role) => (role.readOnly ? `${role.name}(ro)` : role.name)).join(','),
        Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(','), cell(r.description),
      ])));
    });

  program.command('me')
    .description('who the server thinks you are')
    .option('--json', 'print the API response as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const me = await ctx.client().get<Me>('/api/v1/me');
      if (o.json) return ctx.out(json(me));
      ctx.out(`${me.name} (${me.kind}${me.isAdmin ? ', admin' : ''})${me.email ? ` <${me.email}>` : ''}\n` +
        `groups: ${me.groups.length ? me.groups.join(', ') : '(none)'}\nserver: ${ctx.serverUrl()}\n`);
    });

  program.command('reviews')
    .description('after-the-fact reviews of break-glass access (admins)')
    .option('--json', 'print the API response as JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const ctx = cliContext(cmd);
      const res = await ctx.client().get<{ reviews: Review[] }>('/api/v1/reviews');
      if (o.json) return ctx.out(json(res));
      ctx.out(table(['id', 'status', 'kind', 'request', 'grant', 'opened', 'closed by', 'note'], res.reviews.map((r) => [
        r.id, r.status, r.kind, r.requestId, r.grantId ?? '-', relative(r.openedAt, ctx.now()), r.closedBy ?? '-', cell(r.note),
      ])));
    });

  program.command('review')
    .description('act on a break-glass review')
    .command('close')
    .description('close a review with a note on what was done and why')
    .argument('<id>', 'review id', reviewIdArg)
    .requiredOption('--note <text>', 'what the review found', textArg)
    .action(async (id: string, o: { note: string }, cmd: Command) => {
      const ctx = cliContext(cmd);
      await ctx.client().post<{ ok: boolean }>(`/api/v1/reviews/${id}/close`, { note: o.note });
      ctx.out(`review ${id} closed\n`);
    });
}

import { describe, expect, it } from 'vitest';
import { forwardedSettings } from './settings.js';

describe('forwardedSettings', () => {
  it('passes allowed settings from parameters and from options, drops the rest', () => {
    const got = forwardedSettings(
      new Map([
        ['user', 'alice'],
        ['database', 'app'],
        ['application_name', 'psql'],
        ['options', '-c statement_timeout=5s --search-path=app,public -c role=postgres -c default_transaction_read_only=off -cwork_mem=64MB'],
      ]),
    );
    expect(Object.fromEntries(got)).toEqual({ application_name: 'psql', statement_timeout: '5s', search_path: 'app,public', work_mem: '64MB' });
  });

  it('honours backslash-escaped spaces and ignores malformed words', () => {
    const got = forwardedSettings(new Map([['options', '-c application_name=my\\ app -c -c =x garbage']]));
    expect(Object.fromEntries(got)).toEqual({ application_name: 'my app' });
  });
});

import { describe, expect, it } from 'vitest';
import { claimAttributes, globMatch, matchWorkload, workloadBinding } from './workload-match.js';

describe('workload claim conditions', () => {
  const workloads = [
    { name: 'deploy-main', issuer: 'https://ci', claims: { repository: 'acme/orders', ref: 'refs/heads/main' } },
    { name: 'deploy-release', issuer: 'https://ci', claims: { repository: 'acme/orders', ref: ['refs/tags/v*', 'refs/heads/release/*'] } },
  ];

  it('needs every condition to hold, with globs and alternatives', () => {
    expect(matchWorkload(workloads, 'https://ci', { repository: 'acme/orders', ref: 'refs/heads/main' })?.name).toBe('deploy-main');
    expect(matchWorkload(workloads, 'https://ci', { repository: 'acme/orders', ref: 'refs/tags/v1.2' })?.name).toBe('deploy-release');
    expect(matchWorkload(workloads, 'https://ci', { repository: 'acme/orders', ref: 'refs/heads/feature' })).toBeUndefined();
    expect(matchWorkload(workloads, 'https://ci', { repository: 'evil/orders', ref: 'refs/heads/main' })).toBeUndefined();
    expect(matchWorkload(workloads, 'https://other', { repository: 'acme/orders', ref: 'refs/heads/main' })).toBeUndefined();
    expect(matchWorkload(workloads, 'https://ci', { repository: 'acme/orders' })).toBeUndefined();
  });

  it('treats glob metacharacters other than * literally (regression: a dot must not match any character)', () => {
    expect(globMatch('acme/orders.v2', 'acme/ordersXv2')).toBe(false);
    expect(globMatch('refs/heads/(main)', 'refs/heads/(main)')).toBe(true);
    expect(globMatch('refs/*', 'refs/heads/main')).toBe(true);
    expect(globMatch('refs/*', 'xrefs/heads')).toBe(false);
  });

  it('exposes short string claims as attributes, nothing nested', () => {
    expect(claimAttributes({ ref: 'refs/heads/main', exp: 5, nested: { a: 1 }, 'bad key': 'x', long: 'x'.repeat(600) }))
      .toEqual({ ref: 'refs/heads/main', exp: '5' });
  });
});

describe('workload binding (which job a token speaks for)', () => {
  const claims = { sub: 'repo:acme/orders:ref:refs/heads/main', repository: 'acme/orders', ref: 'refs/heads/main', run_id: '7' };
  it('is the same for two tokens of one job, whatever their per-token claims and claim order', () => {
    const a = workloadBinding('https://ci', claims.sub, { ...claims, iat: '1', exp: '2', jti: 'a' });
    const b = workloadBinding('https://ci', claims.sub, { jti: 'b', nbf: '3', iat: '9', exp: '99', run_id: '7', ref: 'refs/heads/main', repository: 'acme/orders', sub: claims.sub });
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(b).toBe(a);
  });
  it('differs for another branch, run, subject or issuer', () => {
    const base = workloadBinding('https://ci', claims.sub, claims);
    expect(workloadBinding('https://ci', claims.sub, { ...claims, ref: 'refs/heads/release/9' })).not.toBe(base);
    expect(workloadBinding('https://ci', claims.sub, { ...claims, run_id: '8' })).not.toBe(base);
    expect(workloadBinding('https://ci', 'repo:acme/orders:ref:refs/heads/x', claims)).not.toBe(base);
    expect(workloadBinding('https://other', claims.sub, claims)).not.toBe(base);
  });
  it('covers namespaced, nested and array claims (CircleCI keeps its branch in oidc.circleci.com/vcs-ref)', () => {
    const circle = { sub: 'org/o/project/p/user/u', aud: ['o'], 'oidc.circleci.com/vcs-ref': 'refs/heads/main', 'oidc.circleci.com/context-ids': ['c1'] };
    const base = workloadBinding('https://oidc.circleci.com/org/o', circle.sub, circle);
    expect(workloadBinding('https://oidc.circleci.com/org/o', circle.sub, { ...circle, 'oidc.circleci.com/vcs-ref': 'refs/heads/feature' })).not.toBe(base);
    expect(workloadBinding('https://oidc.circleci.com/org/o', circle.sub, { ...circle, 'oidc.circleci.com/context-ids': ['c2'] })).not.toBe(base);
    expect(workloadBinding('https://oidc.circleci.com/org/o', circle.sub, { ...circle, iat: 5, exp: 6 })).toBe(base);
  });
});

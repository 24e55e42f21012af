import { spawnSync } from 'node:child_process';

/**
 * The path of `command`, installing Debian package `pkg` (apt-get, as root) when it is missing.
 * In CI (`CI=true`) a command that cannot be had fails the test run; elsewhere it returns
 * undefined after saying so loudly, and the caller skips.
 */
export function ensureDebianCommand(command: string, pkg: string): string | undefined {
  const find = (): string | undefined =>
    spawnSync('sh', ['-c', `command -v ${command} || ls /usr/sbin/${command} 2>/dev/null`], { encoding: 'utf8' }).stdout.trim().split('\n')[0] || undefined;
  const found = find();
  if (found) return found;
  const why = process.getuid?.() !== 0
    ? 'not root, cannot apt-get install'
    : spawnSync('sh', ['-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkg}`], { encoding: 'utf8' }).status === 0
      ? undefined
      : `apt-get install ${pkg} failed`;
  const installed = why === undefined ? find() : undefined;
  if (installed) return installed;
  const message = `${command} (Debian package ${pkg}) is not available: ${why ?? 'not found after installing'}`;
  if (process.env.CI === 'true') throw new Error(message);
  console.warn(`\n*** SKIPPING tests that need ${command}: ${message} ***\n`);
  return undefined;
}

import type { ProviderLookup } from '../access/context.js';
import type { Policy, ResourceDef } from '../policy/types.js';
import type { Provider, ProviderFactory, SecretRef, SecretResolver } from '../providers/provider.js';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../domain/errors.js';

/** Resolves admin secrets from the environment or a file; the policy only names them. */
export function secretResolver(env: Readonly<Record<string, string | undefined>>): SecretResolver {
  return (ref: SecretRef) => {
    if ('env' in ref) {
      const v = env[ref.env];
      if (v === undefined || v === '') throw new ConfigError(`environment variable ${ref.env} (an admin credential) is not set`);
      return v;
    }
    try {
      return readFileSync(ref.file, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new ConfigError(`cannot read admin credential file ${ref.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  };
}

/**
 * One Provider per resource, made lazily from the current policy; rebuilt when a resource's
 * kind or connection changes, closed when it leaves the policy.
 */
export class ProviderPool implements ProviderLookup {
  readonly #factories: ReadonlyMap<string, ProviderFactory>;
  readonly #secrets: SecretResolver;
  readonly #policy: () => Policy;
  readonly #live = new Map<string, { key: string; provider: Provider }>();
  readonly #closing = new Set<Promise<void>>();

  readonly #deployment: string | undefined;
  readonly #earlier: readonly string[];

  /** `earlierDeployments`: this deployment's names before a master key rotation (its roles are still its own). */
  constructor(factories: ReadonlyMap<string, ProviderFactory>, secrets: SecretResolver, policy: () => Policy, deployment?: string, earlierDeployments: readonly string[] = []) {
    this.#factories = factories;
    this.#secrets = secrets;
    this.#policy = policy;
    this.#deployment = deployment;
    this.#earlier = earlierDeployments;
  }

  get(resource: string): Provider | undefined {
    const def = this.#policy().resources.get(resource);
    const existing = this.#live.get(resource);
    if (!def) {
      if (existing) this.#retire(resource, existing.provider);
      return undefined;
    }
    const key = fingerprint(def);
    if (existing && existing.key === key) return existing.provider;
    if (existing) this.#retire(resource, existing.provider);
    const factory = this.#factories.get(def.kind);
    if (!factory) return undefined;
    const provider = factory.create({ name: def.name, kind: def.kind, connection: def.connection }, this.#secrets, { deployment: this.#deployment, earlierDeployments: this.#earlier });
    this.#live.set(resource, { key, provider });
    return provider;
  }

  #retire(resource: string, provider: Provider): void {
    this.#live.delete(resource);
    const p = provider.close().catch(() => undefined);
    this.#closing.add(p);
    void p.finally(() => this.#closing.delete(p));
  }

  async close(): Promise<void> {
    const all = [...this.#live.values()].map((e) => e.provider.close().catch(() => undefined));
    this.#live.clear();
    await Promise.all([...all, ...this.#closing]);
  }
}

function fingerprint(def: ResourceDef): string {
  return `${def.kind}\n${JSON.stringify(def.connection)}`;
}

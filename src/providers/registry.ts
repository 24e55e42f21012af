import type { ProviderFactory } from './provider.js';
import { postgresProviderFactory } from './postgres/index.js';

/** Every target kind hallpass can provision, by `kind` as written in the policy file. */
export const providerFactories: ReadonlyMap<string, ProviderFactory> = new Map(
  [postgresProviderFactory].map((f) => [f.kind, f] as const),
);

import { Type } from '@sinclair/typebox';
import type { KindSchemas } from './loader.js';

/**
 * A stand-in `postgres` kind for policy tests: the shape of a real provider's schemas,
 * without depending on the provider under construction.
 */
const strict = { additionalProperties: false } as const;
const SecretRef = Type.Union([Type.Object({ env: Type.String() }, strict), Type.Object({ file: Type.String() }, strict)]);

export const testKinds: KindSchemas = new Map([
  [
    'postgres',
    {
      kind: 'postgres',
      connectionSchema: Type.Object(
        {
          host: Type.String(),
          port: Type.Integer({ minimum: 1, maximum: 65535 }),
          database: Type.String(),
          admin: Type.Object({ user: Type.String(), password: SecretRef }, strict),
        },
        strict,
      ),
      privilegesSchema: Type.Object({ memberOf: Type.Array(Type.String()) }, strict),
      guardrails: ['ddl', 'truncate', 'write', 'write_without_where', 'copy_program', 'set_role', 'escape', 'do_block'],
    },
  ],
]);

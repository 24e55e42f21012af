import { Type } from '@sinclair/typebox';
import type { Static } from '@sinclair/typebox';

/**
 * Shape of the policy file. Structure only (types, required fields, unknown keys); names,
 * durations, references and expressions are checked afterwards so their messages can be precise.
 * Every object rejects unknown keys: a typo must not silently disable a control.
 */
const strict = { additionalProperties: false } as const;
const Str = Type.String();
const Names = Type.Array(Type.String());
const Labels = Type.Record(Type.String(), Type.String());

export const GroupSchema = Type.Object({ name: Str, description: Type.Optional(Str) }, strict);

export const UserSchema = Type.Object(
  {
    name: Str,
    email: Type.Optional(Str),
    passwordHash: Type.Optional(Str),
    groups: Type.Optional(Names),
    admin: Type.Optional(Type.Boolean()),
    attributes: Type.Optional(Labels),
  },
  strict,
);

export const RoleSchema = Type.Object(
  {
    description: Type.Optional(Str),
    readOnly: Type.Optional(Type.Boolean()),
    privileges: Type.Unknown(),
    guardrails: Type.Optional(Names),
  },
  strict,
);

export const ResourceSchema = Type.Object(
  {
    name: Str,
    kind: Str,
    description: Type.Optional(Str),
    labels: Type.Optional(Labels),
    connection: Type.Unknown(),
    // Checked by buildResources against ResourceGatewaySchema, so a mistake in it does not drop
    // the resource (and with it every rule that names it) from the rest of the validation.
    gateway: Type.Optional(Type.Unknown()),
    roles: Type.Record(Type.String(), RoleSchema),
  },
  strict,
);

export const ResourceGatewaySchema = Type.Object({ storeParameters: Type.Optional(Type.Boolean()) }, strict);

export const ApprovalObjectSchema = Type.Object(
  { approvals: Type.Integer(), from: Names },
  strict,
);

export const RuleSchema = Type.Object(
  {
    name: Str,
    description: Type.Optional(Str),
    who: Type.Object(
      { users: Type.Optional(Names), groups: Type.Optional(Names), workloads: Type.Optional(Names) },
      strict,
    ),
    resources: Type.Object({ names: Type.Optional(Names), labels: Type.Optional(Labels) }, strict),
    roles: Type.Array(Str, { minItems: 1 }),
    duration: Type.Object({ default: Type.Optional(Str), max: Str }, strict),
    approval: Type.Union([Type.Literal('auto'), ApprovalObjectSchema], {
      hint: "must be 'auto' or { approvals: N, from: [group, ...] }",
    }),
    when: Type.Optional(Str),
    reason: Type.Optional(
      Type.Object({ required: Type.Optional(Type.Boolean()), ticketPattern: Type.Optional(Str) }, strict),
    ),
    pendingTtl: Type.Optional(Str),
    mfa: Type.Optional(
      Type.Object(
        {
          request: Type.Optional(Type.Boolean()),
          approve: Type.Optional(Type.Boolean()),
          connect: Type.Optional(Type.Boolean()),
          freshness: Type.Optional(Str),
        },
        strict,
      ),
    ),
  },
  strict,
);

export const BreakGlassSchema = Type.Object({ groups: Names, maxDuration: Str }, strict);

export const PolicyFileSchema = Type.Object(
  {
    settings: Type.Optional(Type.Object({ pendingTtl: Type.Optional(Str) }, strict)),
    groups: Type.Optional(Type.Array(GroupSchema)),
    users: Type.Optional(Type.Array(UserSchema)),
    resources: Type.Array(ResourceSchema),
    rules: Type.Array(RuleSchema),
    breakGlass: Type.Optional(BreakGlassSchema),
  },
  strict,
);

export type RawGroup = Static<typeof GroupSchema>;
export type RawUser = Static<typeof UserSchema>;
export type RawRole = Static<typeof RoleSchema>;
export type RawResource = Static<typeof ResourceSchema>;
export type RawResourceGateway = Static<typeof ResourceGatewaySchema>;
export type RawRule = Static<typeof RuleSchema>;
export type RawBreakGlass = Static<typeof BreakGlassSchema>;

// The configuration reference of the docs, rendered from the schema itself: one row per key with
// its type, default and description, the policies' own settings included. A test keeps the table
// in the docs equal to this, so the reference cannot drift from what start-up accepts.

import type { TSchema } from '@sinclair/typebox';
import { buildConfigSchema, type PolicySettingsSpec } from './schema.js';

interface JsonSchema {
  type?: string;
  enum?: unknown[];
  default?: unknown;
  description?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minItems?: number;
  minLength?: number;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  additionalProperties?: JsonSchema | boolean;
  patternProperties?: Record<string, JsonSchema>;
}

const code = (v: unknown) => `\`${typeof v === 'string' ? v : JSON.stringify(v)}\``;

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map(code).join(' \\| ');
  if (s.type === 'array') {
    const of = s.items?.type === 'object' ? 'objects' : 'strings';
    return `${s.minItems ? 'non-empty ' : ''}list of ${of}`;
  }
  if (s.type === 'integer' || s.type === 'number') {
    const lo = s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : s.minimum !== undefined ? `≥ ${s.minimum}` : '';
    const hi = s.maximum !== undefined ? `≤ ${s.maximum === 2 ** 32 ? '2^32' : s.maximum}` : '';
    return [s.type, [lo, hi].filter(Boolean).join(', ')].filter(Boolean).join(' ');
  }
  if (s.type === 'object') return 'map';
  return s.type ?? 'any';
}

function defaultOf(s: JsonSchema, required: boolean): string {
  if (s.default !== undefined) return code(s.default);
  return required ? '(required)' : 'unset';
}

/** Rows of the table below `path` for schema `s`. */
function rows(path: string, s: JsonSchema, required: boolean, out: string[][]): void {
  const leaf = () => out.push([code(path), typeOf(s), defaultOf(s, required), s.description ?? '']);
  if (s.type === 'object' && s.properties && Object.keys(s.properties).length > 0) {
    for (const [key, child] of Object.entries(s.properties)) rows(`${path ? `${path}.` : ''}${key}`, child, s.required?.includes(key) ?? false, out);
    return;
  }
  if (s.type === 'object' && typeof s.additionalProperties === 'object') {
    rows(`${path}.<policy>`, { ...s.additionalProperties, description: s.description }, false, out);
    return;
  }
  if (s.type === 'array' && s.items?.type === 'object') {
    leaf();
    rows(`${path}[]`, s.items, false, out);
    return;
  }
  leaf();
}

/** The whole configuration reference, as a Markdown table. */
export function configReference(policies: readonly PolicySettingsSpec[]): string {
  const schema = buildConfigSchema(policies) as TSchema as JsonSchema;
  const out: string[][] = [];
  rows('', schema, false, out);
  // Under `policies`, every policy has the same mode and exemptions: one row each, as `<policy>`.
  const shared = /^`policies\.([^.`]+)\.(mode|exemptions\.)/;
  const first = policies[0]?.name;
  const lines = ['| Key | Type | Default | Meaning |', '|---|---|---|---|'];
  for (const [key, type, def, meaning] of out) {
    const m = shared.exec(key!);
    if (m && m[1] !== first) continue;
    lines.push(`| ${m ? key!.replace(`policies.${first}.`, 'policies.<policy>.') : key} | ${type} | ${def} | ${meaning} |`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Form logic kept apart from the DOM: which input a hyperparameter gets, how the typed text
 * becomes a value, which runs can be deployed. Validation of values against the contract is
 * the server's: the form only parses what the input type implies and sends it.
 */
import { Hyperparameter, Profile, Run } from './api';

export type InputKind = 'integer' | 'number' | 'boolean' | 'text' | 'json';

/** The input a hyperparameter gets, from its detected type (or its default's). */
export function inputKind(hp: Hyperparameter): InputKind {
  switch ((hp.type || '').toLowerCase()) {
    case 'int':
    case 'integer':
      return 'integer';
    case 'float':
    case 'number':
      return 'number';
    case 'bool':
    case 'boolean':
      return 'boolean';
    case 'str':
    case 'string':
      return 'text';
    default:
      break;
  }
  const value = hp.default;
  if (typeof value === 'boolean') {
    return 'boolean';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? 'integer' : 'number';
  }
  if (typeof value === 'string') {
    return 'text';
  }
  return 'json';
}

/** The text an input shows for a value (JSON for lists, dicts and null). */
export function formatValue(kind: InputKind, value: unknown): string {
  if (kind === 'boolean') {
    return value ? 'true' : 'false';
  }
  if (kind === 'text') {
    return value === null || value === undefined ? '' : String(value);
  }
  if (kind === 'json') {
    return JSON.stringify(value ?? null);
  }
  return value === null || value === undefined ? '' : String(value);
}

export class FieldError extends Error {
  constructor(
    readonly field: string,
    message: string
  ) {
    super(message);
    this.name = 'FieldError';
  }
}

/**
 * The value typed into a hyperparameter's input. Numbers are sent as numbers (an integer
 * field given 2.5 sends 2.5: the server says what it expects); text that is not a number
 * is refused here, JSON must parse.
 */
export function parseValue(hp: Hyperparameter, raw: string | boolean): unknown {
  const kind = inputKind(hp);
  if (kind === 'boolean') {
    return typeof raw === 'boolean' ? raw : raw.trim().toLowerCase() === 'true';
  }
  const text = String(raw);
  if (kind === 'text') {
    return text;
  }
  if (kind === 'json') {
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new FieldError(hp.name, `'${hp.name}' must be JSON (e.g. [1, 2] or {"a": 1}): ${(error as Error).message}`);
    }
  }
  const trimmed = text.trim();
  const value = Number(trimmed);
  if (!trimmed || !Number.isFinite(value)) {
    throw new FieldError(hp.name, `'${hp.name}' must be a number, got '${text}'`);
  }
  return value;
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Hyperparameters to send: only those whose value differs from the contract's default, so a
 * run records exactly what the researcher overrode.
 */
export function collectOverrides(
  hyperparameters: Hyperparameter[],
  raw: Record<string, string | boolean>
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const hp of hyperparameters) {
    if (!(hp.name in raw)) {
      continue;
    }
    const value = parseValue(hp, raw[hp.name]);
    if (!sameValue(value, hp.default)) {
      out[hp.name] = value;
    }
  }
  return out;
}

/** The admin's default profile's name, else the first one's. */
export function defaultProfile(profiles: Profile[]): string | undefined {
  return (profiles.find(p => p.default) ?? profiles[0])?.name;
}

/** Training runs that finished well: what Deploy offers, newest first. */
export function deployableRuns(runs: Run[]): Run[] {
  return runs
    .filter(r => r.kind === 'train' && r.status === 'succeeded')
    .sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
}

/** A deployment name from a model name: lower-case letters, digits and dashes. */
export function suggestDeploymentName(model: string): string {
  const name = model
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return name || 'model';
}

/** The JSON a "try it" box holds, or a readable error. */
export function parseRequestJson(text: string): unknown {
  if (!text.trim()) {
    throw new FieldError('request', 'Type the JSON to send, e.g. {"x": 1}');
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new FieldError('request', `The request is not valid JSON: ${(error as Error).message}`);
  }
}

/** Runs that are still going (the status-bar count). */
export function activeRuns(runs: Run[]): Run[] {
  return runs.filter(r => r.status === 'pending' || r.status === 'running');
}

/** Runs that were active in `before` and are finished in `after` (for end-of-run notifications). */
export function newlyFinished(before: Map<string, string>, after: Run[]): Run[] {
  return after.filter(r => {
    const previous = before.get(r.id);
    return (previous === 'pending' || previous === 'running') && (r.status === 'succeeded' || r.status === 'failed' || r.status === 'cancelled');
  });
}

/** Points of each metric sorted by step (steps missing: in recording order). */
export function metricSeries(points: { name: string; step: number | null; value: number }[]): Map<string, number[]> {
  const grouped = new Map<string, { step: number; value: number }[]>();
  points.forEach((p, i) => {
    const list = grouped.get(p.name) ?? [];
    list.push({ step: p.step ?? i, value: p.value });
    grouped.set(p.name, list);
  });
  const out = new Map<string, number[]>();
  for (const [name, list] of grouped) {
    out.set(
      name,
      list.sort((a, b) => a.step - b.step).map(p => p.value)
    );
  }
  return out;
}

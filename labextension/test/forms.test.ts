import { Run } from '../src/api';
import {
  FieldError,
  activeRuns,
  collectOverrides,
  defaultProfile,
  deployableRuns,
  formatValue,
  inputKind,
  metricSeries,
  newlyFinished,
  parseRequestJson,
  parseValue,
  suggestDeploymentName
} from '../src/forms';

const HPS = [
  { name: 'C', type: 'float', default: 1.0 },
  { name: 'max_iter', type: 'int', default: 200 },
  { name: 'penalty', type: 'str', default: 'l2' },
  { name: 'fit_intercept', type: 'bool', default: true },
  { name: 'layers', type: 'list', default: [64, 32] }
];

function run(id: string, status: string, extra: Partial<Run> = {}): Run {
  return {
    id, status, kind: 'train', reason: null, model: 'iris', version: '1', hyperparameters: {}, metrics: {},
    created_at: `2026-01-01T00:00:0${id.slice(-1)}Z`, ...extra
  };
}

describe('typed hyperparameter inputs', () => {
  it('picks the input kind from the contract type, else from the default', () => {
    expect(HPS.map(inputKind)).toEqual(['number', 'integer', 'text', 'boolean', 'json']);
    expect(inputKind({ name: 'x', type: '', default: 3 })).toBe('integer');
    expect(inputKind({ name: 'x', type: 'unknown', default: 0.1 })).toBe('number');
    expect(inputKind({ name: 'x', type: 'unknown', default: false })).toBe('boolean');
    expect(inputKind({ name: 'x', type: 'dict', default: { a: 1 } })).toBe('json');
  });

  it('shows values as the input expects them', () => {
    expect(formatValue('number', 1.5)).toBe('1.5');
    expect(formatValue('boolean', true)).toBe('true');
    expect(formatValue('json', [64, 32])).toBe('[64,32]');
    expect(formatValue('json', null)).toBe('null');
    expect(formatValue('text', undefined)).toBe('');
  });

  it('parses typed text into values', () => {
    expect(parseValue(HPS[0], '0.25')).toBe(0.25);
    expect(parseValue(HPS[1], ' 300 ')).toBe(300);
    expect(parseValue(HPS[2], 'l1')).toBe('l1');
    expect(parseValue(HPS[3], false)).toBe(false);
    expect(parseValue(HPS[3], 'true')).toBe(true);
    expect(parseValue(HPS[4], '[1, 2]')).toEqual([1, 2]);
  });

  it('leaves integrality to the server: 2.5 for an int is sent as typed', () => {
    expect(parseValue(HPS[1], '2.5')).toBe(2.5);
  });

  it('refuses text that is no number, and bad JSON, naming the field', () => {
    expect(() => parseValue(HPS[0], 'abc')).toThrow("'C' must be a number, got 'abc'");
    expect(() => parseValue(HPS[0], '')).toThrow(FieldError);
    expect(() => parseValue(HPS[4], '[1,')).toThrow(/^'layers' must be JSON/);
  });

  it('sends only the values that differ from the defaults', () => {
    const raw = { C: '0.5', max_iter: '200', penalty: 'l2', fit_intercept: true, layers: '[64, 32]' };
    expect(collectOverrides(HPS, raw)).toEqual({ C: 0.5 });
    expect(collectOverrides(HPS, { fit_intercept: false, layers: '[8]' })).toEqual({ fit_intercept: false, layers: [8] });
    expect(collectOverrides(HPS, {})).toEqual({});
  });
});

describe('profiles, runs and deployments', () => {
  it("picks the admin's default profile, else the first", () => {
    expect(defaultProfile([{ name: 'a' }, { name: 'b', default: true }])).toBe('b');
    expect(defaultProfile([{ name: 'a' }, { name: 'b' }])).toBe('a');
    expect(defaultProfile([])).toBeUndefined();
  });

  it('offers succeeded training runs, newest first', () => {
    const runs = [run('r1', 'succeeded'), run('r2', 'failed'), run('r3', 'succeeded'), run('r4', 'running'),
      run('r5', 'succeeded', { kind: 'batch_predict' })];
    expect(deployableRuns(runs).map(r => r.id)).toEqual(['r3', 'r1']);
  });

  it('counts active runs and finds the ones that just ended', () => {
    const runs = [run('r1', 'running'), run('r2', 'pending'), run('r3', 'succeeded')];
    expect(activeRuns(runs).map(r => r.id)).toEqual(['r1', 'r2']);
    const before = new Map([['r1', 'running'], ['r2', 'pending'], ['r3', 'succeeded']]);
    const after = [run('r1', 'succeeded'), run('r2', 'pending'), run('r3', 'succeeded'), run('r4', 'failed')];
    expect(newlyFinished(before, after).map(r => r.id)).toEqual(['r1']);
  });

  it('suggests a DNS-safe deployment name', () => {
    expect(suggestDeploymentName('Iris Classifier_v2')).toBe('iris-classifier-v2');
    expect(suggestDeploymentName('***')).toBe('model');
  });

  it('parses the try-it box or says why not', () => {
    expect(parseRequestJson('{"sepal_length": 5.1}')).toEqual({ sepal_length: 5.1 });
    expect(() => parseRequestJson('  ')).toThrow('Type the JSON to send');
    expect(() => parseRequestJson('{bad')).toThrow(/^The request is not valid JSON/);
  });

  it('groups metric points into series ordered by step', () => {
    const series = metricSeries([
      { name: 'loss', step: 2, value: 0.3 },
      { name: 'loss', step: 0, value: 1 },
      { name: 'accuracy', step: null, value: 0.9 },
      { name: 'loss', step: 1, value: 0.5 }
    ]);
    expect(series.get('loss')).toEqual([1, 0.5, 0.3]);
    expect(series.get('accuracy')).toEqual([0.9]);
  });
});

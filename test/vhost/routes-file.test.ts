import { describe, expect, it } from 'vitest';
import { RoutesFileError, parseRoutesFile } from '../../src/vhost/index.js';

describe('parseRoutesFile', () => {
  it('parses the documented form, normalising names and members', () => {
    const specs = parseRoutesFile(
      JSON.stringify({
        'Docs.Example.com.': { members: ['10.0.0.5:8080', '10.0.0.6:8080', '10.0.0.5:8080'], rewrite: 'docs.internal' },
        '*.apps.example.com': { members: ['10.0.0.7'] },
      }),
    );
    expect(specs).toEqual([
      { fqdn: 'docs.example.com', cluster: 'static:docs.example.com', members: ['10.0.0.5:8080', '10.0.0.6:8080'], rewrite: 'docs.internal', source: 'static' },
      { fqdn: '*.apps.example.com', cluster: 'static:*.apps.example.com', members: ['10.0.0.7:80'], rewrite: null, source: 'static' },
    ]);
  });

  it('accepts a cluster with no members (it answers 503 until it has some)', () => {
    expect(parseRoutesFile('{"a.test": {"members": []}}')[0]?.members).toEqual([]);
  });

  it.each([
    ['not json', 'not valid JSON'],
    ['[]', 'expected a JSON object'],
    ['{"bad name": {"members": []}}', '"bad name"'],
    ['{"a.test": {"members": "10.0.0.1:80"}}', '"members" must be an array'],
    ['{"a.test": {"members": [8080]}}', '"host:port" string'],
    ['{"a.test": {"members": ["10.0.0.1:99999"]}}', 'port out of range'],
    ['{"a.test": {"members": [], "rewrite": 5}}', '"rewrite" must be a hostname'],
    ['{"a.test": {"members": [], "rewrite": "bad host"}}', 'rewrite:'],
    ['{"a.test": {"members": [], "weight": 5}}', 'unknown key "weight"'],
    ['{"a.test": {"members": []}, "A.TEST.": {"members": []}}', 'appears twice'],
    ['{"a.*.test": {"members": []}}', '"a.*.test"'],
  ])('refuses %s with a reason', (text, reason) => {
    expect(() => parseRoutesFile(text, 'routes.json')).toThrow(RoutesFileError);
    expect(() => parseRoutesFile(text, 'routes.json')).toThrow(reason);
  });
});

describe('rewrite', () => {
  it('is normalised like every name, its port kept', () => {
    expect(parseRoutesFile('{"a.test": {"members": [], "rewrite": "Bücher.Internal:8080"}}')[0]?.rewrite).toBe('xn--bcher-kva.internal:8080');
  });
});

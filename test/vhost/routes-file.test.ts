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

describe('the text of the file', () => {
  it('accepts a UTF-8 byte order mark', () => {
    expect(parseRoutesFile('\uFEFF{"a.test": {"members": ["10.0.0.1:80"]}}', 'routes.json')[0]?.fqdn).toBe('a.test');
  });

  it('refuses a name that appears twice, which JSON.parse would keep the last of', () => {
    expect(() => parseRoutesFile('{"a.test": {"members": ["10.0.0.1:80"]}, "b.test": {"members": []}, "a.test": {"members": ["10.0.0.2:80"]}}', 'routes.json')).toThrow(
      new RoutesFileError('routes.json: "a.test" appears twice'),
    );
  });

  it('refuses a key that appears twice in an entry, naming the entry', () => {
    expect(() => parseRoutesFile('{"a.test": {"members": ["10.0.0.1:80"], "members": []}}', 'routes.json')).toThrow(new RoutesFileError('routes.json: "a.test": "members" appears twice'));
  });

  it('reads keys as JSON does: values are not keys, escapes are decoded', () => {
    const text = String.raw`{"a.test": {"members": ["a.test"], "rewrite": "b.test"}, "b.test": {"members": ["a.test"]}, "c\"d": 1}`;
    expect(() => parseRoutesFile(text, 'routes.json')).toThrow('routes.json: "c\\"d": '); // its own problem, not "appears twice"
    expect(parseRoutesFile(String.raw`{"a.test": {"members": ["a.test:1"], "rewrite": "b.test"}, "b.test": {"members": ["a.test:1"]}}`)).toHaveLength(2);
    expect(() => parseRoutesFile(String.raw`{"a.test": {"members": []}, "a\u002etest": {"members": []}}`, 'routes.json')).toThrow('routes.json: "a.test" appears twice');
  });
});

describe('rewrite', () => {
  it.each([
    ['docs.internal\r\n', 'rewrite: character U+000D (carriage return) is not allowed'],
    ['docs.internal:8080\n', 'rewrite: character U+000A (line feed) is not allowed'],
    ['docs internal', 'rewrite: character U+0020 (space) is not allowed'],
  ])('says which character is wrong in %j', (rewrite, reason) => {
    const text = JSON.stringify({ 'a.test': { members: [], rewrite } });
    expect(() => parseRoutesFile(text, 'routes.json')).toThrow(`routes.json: "a.test": ${reason}`);
  });

  it('is normalised like every name, its port kept', () => {
    expect(parseRoutesFile('{"a.test": {"members": [], "rewrite": "Bücher.Internal:8080"}}')[0]?.rewrite).toBe('xn--bcher-kva.internal:8080');
  });
});

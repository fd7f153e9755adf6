import { describe, expect, it } from 'vitest';
import { normalizeHostname, parseHostname, wildcardOf, wildcardParent } from '../src/hostname.js';
import { InvalidHostnameError } from '../src/errors.js';

describe('normalizeHostname', () => {
  it.each([
    ['example.com', 'example.com'],
    ['Example.COM', 'example.com'],
    ['example.com:8080', 'example.com'],
    ['example.com.', 'example.com'],
    ['EXAMPLE.com.:443', 'example.com'],
    ['bücher.example', 'xn--bcher-kva.example'],
    ['BÜCHER.example.:80', 'xn--bcher-kva.example'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['127.0.0.1', '127.0.0.1'],
    ['127.0.0.1:8080', '127.0.0.1'],
    ['[::1]', '[::1]'],
    ['[::1]:8080', '[::1]'],
    ['[2001:DB8:0:0:0:0:0:1]:443', '[2001:db8::1]'],
    ['localhost', 'localhost'],
    ['a-b.c_d.example', 'a-b.c_d.example'],
  ])('%s → %s', (raw, expected) => {
    expect(normalizeHostname(raw)).toBe(expected);
  });

  it.each([
    ['', 'empty name'],
    ['.', 'empty name'],
    ['example..com', 'empty label'],
    ['example.com..', 'empty label'],
    ['.example.com', 'empty label'],
    ['exa mple.com', 'not allowed'],
    ['example.com\0', 'not allowed'],
    ['a,b.example', 'not allowed'],
    ['-a.example', 'hyphen'],
    ['a-.example', 'hyphen'],
    ['example.com:', 'empty port'],
    ['example.com:99999', 'port out of range'],
    ['example.com:80a', 'port is not a number'],
    ['::1', 'brackets'],
    ['[::1', 'unterminated'],
    ['[::1]x', 'unexpected characters'],
    ['[nope]', 'not a valid IPv6'],
    ['*.example.com', 'wildcard'],
    ['user@example.com', 'not allowed'],
    ['example.com/path', 'not allowed'],
    [`${'a'.repeat(64)}.example`, 'label longer than 63'],
    [`${'abcdefghi.'.repeat(26)}com`, 'longer than 253'],
  ])('rejects %j (%s)', (raw, reason) => {
    const result = parseHostname(raw);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
    expect(() => normalizeHostname(raw)).toThrow(InvalidHostnameError);
  });

  it('accepts a wildcard only where asked, and normalises the rest of it', () => {
    expect(normalizeHostname('*.Apps.Example.COM.', { allowWildcard: true })).toBe('*.apps.example.com');
    expect(parseHostname('a.*.example.com', { allowWildcard: true }).ok).toBe(false);
    expect(parseHostname('*', { allowWildcard: true }).ok).toBe(false);
  });

  it('refuses a port where none is allowed', () => {
    expect(parseHostname('example.com:80', { allowPort: false }).ok).toBe(false);
    expect(parseHostname('[::1]:80', { allowPort: false }).ok).toBe(false);
  });

  it('names the reason in the error message', () => {
    expect(() => normalizeHostname('bad host')).toThrow(/invalid hostname "bad host": character U\+0020 is not allowed/);
  });
});

describe('wildcardOf / wildcardParent', () => {
  it('gives the one-label wildcard covering a name', () => {
    expect(wildcardOf('a.example.com')).toBe('*.example.com');
    expect(wildcardOf('localhost')).toBeUndefined();
    expect(wildcardOf('10.0.0.1')).toBeUndefined();
    expect(wildcardOf('[::1]')).toBeUndefined();
    expect(wildcardParent('*.example.com')).toBe('example.com');
    expect(wildcardParent('example.com')).toBeUndefined();
  });
});

describe('parseAuthority', () => {
  it('normalises the name and keeps the port', async () => {
    const { parseAuthority } = await import('../src/hostname.js');
    expect(parseAuthority('Docs.Internal:8080')).toEqual({ ok: true, hostname: 'docs.internal:8080' });
    expect(parseAuthority('bücher.example')).toEqual({ ok: true, hostname: 'xn--bcher-kva.example' });
    expect(parseAuthority('[::1]:81')).toEqual({ ok: true, hostname: '[::1]:81' });
    expect(parseAuthority('bad host').ok).toBe(false);
  });
});

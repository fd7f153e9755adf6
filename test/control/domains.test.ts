import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { Domains } from '../../src/control/domains.js';
import { openStore } from '../../src/control/index.js';
import { cborShape, eventually, startTestControlPlane } from '../helpers/control-client.js';
import type { RawControlClient } from '../helpers/control-client.js';
import { startDnsServer } from '../helpers/dns-server.js';
import type { TestDnsServer } from '../helpers/dns-server.js';

const SIX_HOURS = 6 * 3_600_000;

const publish = (domain: string, subdomain: string, member = '10.0.0.1:80') => ({ domain, subdomain, rewrite: null, ssl: null, containers: [member] });

/** prepare → TXT record → claim; returns the claim's reply params. */
async function claim(client: RawControlClient, dns: TestDnsServer, domain: string): Promise<Record<string, unknown>> {
  const prepared = await client.request('prepare_domain', { domain });
  expect(prepared.params.exception).toBeUndefined();
  await dns.setTxt(`tf-token.${domain}`, Buffer.from(prepared.params.token as Uint8Array).toString('ascii'));
  return (await client.request('claim_domain', { domain })).params;
}

async function exception(client: RawControlClient, command: string, params: unknown): Promise<string> {
  const reply = await client.request(command, params);
  expect(reply.params.exception, `${command} ${JSON.stringify(params)} should be refused`).toBeTypeOf('string');
  return reply.params.exception as string;
}

async function setup(options: { globalDomains?: string[]; stateDir?: string; now?: () => number } = {}) {
  const dns = await startDnsServer();
  const gw = await startTestControlPlane({ dnsServer: dns.address, ...options });
  return { dns, gw };
}

describe('domain claims', () => {
  it('prepare gives a 32-character letters-and-digits token as a CBOR byte string; claim succeeds once the TXT record holds it', async () => {
    const { dns, gw } = await setup();
    const a = await gw.session();
    const reply = await a.request('prepare_domain', { domain: 'Example.COM.' });
    expect(cborShape(reply.paramsPlain)).toEqual({ token: 'bytes' });
    const token = Buffer.from(reply.params.token as Uint8Array).toString('latin1');
    expect(token).toMatch(/^[A-Za-z0-9]{32}$/);

    expect(await exception(a, 'claim_domain', { domain: 'example.com' })).toBe(
      'no TXT record tf-token.example.com found: add it with the token from prepare, then claim again',
    );
    // The failed claim did not use the token up: the same token works once the record is there (no cached answer).
    await dns.setTxt('tf-token.example.com', token);
    const claimed = await a.request('claim_domain', { domain: 'EXAMPLE.com' });
    expect(claimed.params).toEqual({});
    expect(cborShape(claimed.paramsPlain)).toEqual({});
    // The successful claim used the token up.
    expect(await exception(a, 'claim_domain', { domain: 'example.com' })).toMatch(/^no token for example\.com: run prepare first \(tfgate domains prepare example\.com\)$/);

    expect((await a.request('list_domains', {})).params).toEqual({ domains: ['test', 'example.com'] });
    const b = await gw.session(a.keys);
    expect(b.offer?.params.domains).toEqual([{ domain: 'test' }, { domain: 'example.com' }]);
    expect(gw.logs.some((line) => line.msg === 'domain claimed' && line.domain === 'example.com')).toBe(true);
    expect(JSON.stringify(gw.logs)).not.toContain(token);
  });

  it('a second prepare replaces the first token; a wrong token and an expired token are refused with what to do', async () => {
    let clock = Date.parse('2030-01-01T00:00:00Z');
    const { dns, gw } = await setup({ now: () => clock });
    const a = await gw.session();
    const first = Buffer.from((await a.request('prepare_domain', { domain: 'example.com' })).params.token as Uint8Array).toString();
    const second = Buffer.from((await a.request('prepare_domain', { domain: 'example.com' })).params.token as Uint8Array).toString();
    expect(second).not.toBe(first);
    await dns.setTxt('tf-token.example.com', first);
    expect(await exception(a, 'claim_domain', { domain: 'example.com' })).toMatch(
      /^TXT record tf-token\.example\.com does not hold the token of the latest prepare \(1 record\(s\) found\)/,
    );
    // Just before six hours the token still counts; at six hours it has expired.
    clock += SIX_HOURS;
    await dns.setTxt('tf-token.example.com', second);
    expect(await exception(a, 'claim_domain', { domain: 'example.com' })).toBe('token expired: run prepare again (tfgate domains prepare example.com)');
    const third = Buffer.from((await a.request('prepare_domain', { domain: 'example.com' })).params.token as Uint8Array).toString();
    clock += SIX_HOURS - 1;
    await dns.setTxt('tf-token.example.com', third);
    // Several TXT records at the name: any one holding the token will do.
    expect((await a.request('claim_domain', { domain: 'example.com' })).params).toEqual({});
  });

  it('another account cannot claim the domain, a name under it or a parent of it, nor publish under it', async () => {
    const { dns, gw } = await setup();
    const a = await gw.session();
    const b = await gw.session();
    expect(await claim(a, dns, 'example.com')).toEqual({});
    expect(await claim(a, dns, 'shop.example.org')).toEqual({});
    expect(await exception(b, 'prepare_domain', { domain: 'example.com' })).toBe('example.com is claimed by another account');
    expect(await exception(b, 'claim_domain', { domain: 'example.com' })).toBe('example.com is claimed by another account');
    expect(await exception(b, 'prepare_domain', { domain: 'eu.Example.com' })).toBe('eu.example.com is under example.com, claimed by another account');
    expect(await exception(b, 'prepare_domain', { domain: 'example.org' })).toBe('example.org contains shop.example.org, claimed by another account');
    expect(await exception(b, 'publish_web', publish('example.com', 'www.'))).toBe('www.example.com: example.com is claimed by another account');
    expect(await exception(b, 'publish_web', publish('example.com', '*.apps.'))).toBe('*.apps.example.com: example.com is claimed by another account');
    // A domain nobody claimed: the refusal names it and the commands that claim it.
    expect(await exception(b, 'publish_web', publish('example.net', 'www.'))).toBe(
      'www.example.net is not under a domain this account may publish under (test): claim example.net first (tfgate domains prepare example.net, then tfgate domains claim example.net)',
    );
    // The owner publishes exact names and wildcards; an exact name wins over the wildcard.
    expect((await a.request('publish_web', publish('example.com', 'www.', '10.0.0.1:80'))).params).toEqual({});
    expect((await a.request('publish_web', publish('example.com', '*.', '10.0.0.2:80'))).params).toEqual({});
    expect(gw.membersOf('www.example.com')).toEqual(['10.0.0.1:80']);
    expect(gw.membersOf('other.example.com')).toEqual(['10.0.0.2:80']);
    expect(gw.membersOf('www.example.net')).toBeUndefined();
    expect((await b.request('list_domains', {})).params).toEqual({ domains: ['test'] });
  });

  it('release frees the domain and unpublishes the account\'s names under it in all its sessions', async () => {
    const { dns, gw } = await setup();
    const a1 = await gw.session();
    const a2 = await gw.session(a1.keys);
    const b = await gw.session();
    expect(await claim(a1, dns, 'example.com')).toEqual({});
    await a1.request('publish_web', publish('example.com', 'www.'));
    await a2.request('publish_web', publish('example.com', 'api.'));
    await a2.request('publish_web', publish('test', 'kept.'));
    expect(await exception(b, 'release_domain', { domain: 'example.com' })).toBe('example.com is claimed by another account: only its owner can have it released');
    expect(await exception(b, 'release_domain', { domain: 'example.org' })).toMatch(/^example\.org is not claimed by this account \(claim it with tfgate domains prepare example\.org/);

    expect((await a1.request('release_domain', { domain: 'example.com' })).params).toEqual({});
    expect(gw.membersOf('www.example.com')).toBeUndefined();
    expect(gw.membersOf('api.example.com')).toBeUndefined();
    expect(gw.membersOf('kept.test')).toEqual(['10.0.0.1:80']);
    const told = await a2.receive();
    expect(told).toMatchObject({ command: 'log', params: { error: true, log: 'api.example.com was unpublished: example.com was released' } });
    // Permission is checked at every publish: the released domain is no longer usable.
    expect(await exception(a2, 'publish_web', publish('example.com', 'api.'))).toMatch(/^api\.example\.com is not under a domain this account may publish under/);
    expect((await a1.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    // The other account can now claim it.
    await dns.clearTxt('tf-token.example.com');
    expect(await claim(b, dns, 'example.com')).toEqual({});
    expect((await b.request('publish_web', publish('example.com', 'www.', '10.0.0.9:80'))).params).toEqual({});
    expect(gw.membersOf('www.example.com')).toEqual(['10.0.0.9:80']);
  });

  it('a domain made global: every account publishes exact names under it (an fqdn held stays held), no wildcards; made private again, the others\' names go', async () => {
    const { dns, gw } = await setup();
    const a = await gw.session();
    const b = await gw.session();
    expect(await claim(a, dns, 'example.com')).toEqual({});
    expect(await exception(b, 'make_domain_global', { domain: 'example.com' })).toBe('example.com is claimed by another account: only its owner can have it made global');
    expect((await a.request('make_domain_global', { domain: 'example.com' })).params).toEqual({});
    expect((await b.request('list_domains', {})).params).toEqual({ domains: ['test', 'example.com'] });
    expect((await gw.session()).offer?.params.domains).toEqual([{ domain: 'test' }, { domain: 'example.com' }]);

    expect((await b.request('publish_web', publish('example.com', 'b.', '10.0.0.2:80'))).params).toEqual({});
    expect((await a.request('publish_web', publish('example.com', 'a.', '10.0.0.1:80'))).params).toEqual({});
    expect(await exception(a, 'publish_web', publish('example.com', 'b.'))).toBe('b.example.com is published by another session');
    for (const client of [a, b]) {
      expect(await exception(client, 'publish_web', publish('example.com', '*.x.'))).toBe(
        "*.x.example.com: no wildcard under the global domain example.com (it would capture other accounts' names); publish exact names there",
      );
    }
    expect(await exception(b, 'prepare_domain', { domain: 'b.example.com' })).toBe('b.example.com is under example.com, claimed by another account');
    expect(await exception(b, 'make_domain_private', { domain: 'example.com' })).toBe('example.com is claimed by another account: only its owner can have it made private');

    expect((await a.request('make_domain_private', { domain: 'example.com' })).params).toEqual({});
    expect(gw.membersOf('b.example.com')).toBeUndefined();
    expect(gw.membersOf('a.example.com')).toEqual(['10.0.0.1:80']);
    expect(await b.receive()).toMatchObject({ command: 'log', params: { error: true, log: 'b.example.com was unpublished: example.com was made private by its owner' } });
    expect(await exception(b, 'publish_web', publish('example.com', 'b.'))).toBe('b.example.com: example.com is claimed by another account');
    expect((await a.request('publish_web', publish('example.com', '*.x.'))).params).toEqual({});
  });

  it('a domain made global unpublishes its owner\'s wildcards under it, which would capture the names other accounts publish there', async () => {
    const { dns, gw } = await setup();
    const a = await gw.session();
    const b = await gw.session();
    expect(await claim(a, dns, 'example.com')).toEqual({});
    expect((await a.request('publish_web', publish('example.com', '*.', '10.0.0.1:80'))).params).toEqual({});
    expect((await a.request('publish_web', publish('example.com', 'www.', '10.0.0.1:80'))).params).toEqual({});
    expect(gw.membersOf('*.example.com')).toEqual(['10.0.0.1:80']);
    expect((await a.request('make_domain_global', { domain: 'example.com' })).params).toEqual({});
    expect(gw.membersOf('*.example.com')).toBeUndefined();
    expect(gw.membersOf('www.example.com')).toEqual(['10.0.0.1:80']);
    // Told before the reply, so kept among the messages that arrived in between.
    expect(a.others).toContainEqual(expect.objectContaining({ command: 'log', params: { error: true, log: '*.example.com was unpublished: example.com was made global by its owner' } }));
    expect((await b.request('publish_web', publish('example.com', 'b.', '10.0.0.2:80'))).params).toEqual({});
    expect(gw.membersOf('b.example.com')).toEqual(['10.0.0.2:80']);
  });

  it('--global-domain names have no owner: they cannot be claimed (nor names under or above them), released or made private; no wildcards there', async () => {
    const { gw } = await setup({ globalDomains: ['test', 'apps.example.net'] });
    const a = await gw.session();
    expect(await exception(a, 'prepare_domain', { domain: 'apps.example.net' })).toBe(
      'apps.example.net is a global domain of this gateway: it has no owner, and every account may publish under it without claiming it',
    );
    expect(await exception(a, 'claim_domain', { domain: 'x.apps.example.net' })).toBe(
      "x.apps.example.net is under the global domain apps.example.net, whose DNS belongs to the gateway's operator: it cannot be claimed",
    );
    expect(await exception(a, 'prepare_domain', { domain: 'example.net' })).toBe('example.net contains the global domain apps.example.net of this gateway: it cannot be claimed');
    expect(await exception(a, 'release_domain', { domain: 'apps.example.net' })).toBe('apps.example.net is a global domain of this gateway: it has no owner and cannot be released');
    expect(await exception(a, 'make_domain_private', { domain: 'apps.example.net' })).toBe('apps.example.net is a global domain of this gateway: it has no owner and cannot be made private');
    expect(await exception(a, 'make_domain_global', { domain: 'apps.example.net' })).toBe('apps.example.net is a global domain of this gateway: it has no owner and cannot be made global');
    expect(await exception(a, 'publish_web', publish('apps.example.net', '*.'))).toMatch(/^\*\.apps\.example\.net: no wildcard under the global domain apps\.example\.net/);
    expect((await a.request('publish_web', publish('apps.example.net', 'www.'))).params).toEqual({});
  });

  it('bad input: invalid names, public suffixes, addresses and wrong types get clear errors and change nothing', async () => {
    const { dns, gw } = await setup();
    const a = await gw.session();
    const cases: [unknown, RegExp][] = [
      ['com', /^com is a public suffix: claim a domain registered under it \(such as example\.com\)$/],
      ['co.uk', /^co\.uk is a public suffix/],
      ['CO.UK.', /^co\.uk is a public suffix/],
      ['github.io', /^github\.io is a public suffix/],
      ['localhost', /^localhost is a public suffix/],
      ['1.2.3.4', /^domain 1\.2\.3\.4: an IP address is not a domain$/],
      ['[::1]', /an IP address is not a domain/],
      ['*.example.com', /^domain "\*\.example\.com": a wildcard is not allowed here$/],
      ['exa mple.com', /character U\+0020 is not allowed in a hostname/],
      ['-bad.example.com', /may not start or end with a hyphen/],
      ['example.com:80', /a port is not allowed here/],
      ['', /empty name/],
      ['a.'.repeat(200) + 'com', /longer than 253 characters/],
      ['x'.repeat(100_000), /longer than 253 characters/],
      [Buffer.from('example.com'), /^"domain" must be a text string$/],
      [42, /^"domain" must be a text string$/],
      [undefined, /^"domain" must be a text string$/],
    ];
    for (const command of ['prepare_domain', 'claim_domain', 'release_domain', 'make_domain_global', 'make_domain_private']) {
      for (const [domain, reason] of cases) {
        const params = domain === undefined ? {} : { domain };
        const message = await exception(a, command, params);
        expect(message, `${command} ${String(domain).slice(0, 40)}`).toMatch(reason);
        expect(message.length).toBeLessThan(600);
      }
    }
    // A huge TXT record (many records, none of them the token) is refused like any wrong one.
    const prepared = await a.request('prepare_domain', { domain: 'example.com' });
    for (let i = 0; i < 20; i++) await dns.setTxt('tf-token.example.com', 'x'.repeat(250));
    expect(await exception(a, 'claim_domain', { domain: 'example.com' })).toMatch(/does not hold the token of the latest prepare \(20 record\(s\) found\)/);
    expect((await a.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    expect(prepared.params.token).toBeInstanceOf(Uint8Array);
  });

  it('claims racing from two accounts: one winner, the other refused, the store consistent', async () => {
    const { dns, gw } = await setup();
    const a = await gw.session();
    const b = await gw.session();
    for (const client of [a, b]) {
      const token = (await client.request('prepare_domain', { domain: 'example.com' })).params.token as Uint8Array;
      await dns.setTxt('tf-token.example.com', Buffer.from(token).toString());
    }
    const [ra, rb] = await Promise.all([a.request('claim_domain', { domain: 'example.com' }), b.request('claim_domain', { domain: 'example.com' })]);
    const outcomes = [ra.params, rb.params];
    expect(outcomes.filter((p) => p.exception === undefined)).toHaveLength(1);
    expect(outcomes.filter((p) => p.exception === 'example.com is claimed by another account')).toHaveLength(1);
    const lists = [(await a.request('list_domains', {})).params.domains, (await b.request('list_domains', {})).params.domains] as string[][];
    expect(lists.filter((l) => l.includes('example.com'))).toHaveLength(1);
  });

  it('commands sent without a uuid get no exception reply: a failure comes back as a log message', async () => {
    const { gw } = await setup();
    const a = await gw.session();
    await a.tell('prepare_domain', { domain: 'example.com' });
    await a.tell('claim_domain', { domain: 'example.org' });
    const log = await a.receive();
    expect(log).toMatchObject({ command: 'log', params: { error: true, log: 'claim_domain: no token for example.org: run prepare first (tfgate domains prepare example.org)' } });
    expect(log.uuid.length).toBe(0);
    await a.tell('release_domain', { domain: 'example.org' });
    expect((await a.receive()).params.log).toMatch(/^release_domain: example\.org is not claimed by this account/);
    expect((await a.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    expect(a.others).toEqual([]);
  });

  it('a DNS server that does not answer makes the claim fail with the lookup error', async () => {
    const dns = await startDnsServer();
    // A port nothing listens on (the test DNS server is stopped).
    const dead = dns.address;
    await dns.close();
    const gw = await startTestControlPlane({ dnsServer: dead });
    const a = await gw.session();
    await a.request('prepare_domain', { domain: 'example.com' });
    const reply = await a.request('claim_domain', { domain: 'example.com' });
    expect(reply.params.exception).toMatch(/^DNS lookup of TXT tf-token\.example\.com failed \([A-Z]+\): try again$/);
  });

  it('claims survive a restart of the control plane on the same state directory', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'tfgate-domains-'));
    onTestFinished(() => rmSync(stateDir, { recursive: true, force: true }));
    const { dns, gw } = await setup({ stateDir });
    const a = await gw.session();
    const b = await gw.session();
    expect(await claim(a, dns, 'example.com')).toEqual({});
    expect(await claim(b, dns, 'example.org')).toEqual({});
    expect((await b.request('make_domain_global', { domain: 'example.org' })).params).toEqual({});
    a.close();
    b.close();
    await gw.control.close();

    const again = await startTestControlPlane({ stateDir, dnsServer: dns.address });
    const a2 = await again.session(a.keys);
    expect(a2.offer?.params.domains).toEqual([{ domain: 'test' }, { domain: 'example.com' }, { domain: 'example.org' }]);
    expect((await a2.request('publish_web', publish('example.com', 'www.'))).params).toEqual({});
    const b2 = await again.session(b.keys);
    expect(await exception(b2, 'prepare_domain', { domain: 'www.example.com' })).toBe('www.example.com is under example.com, claimed by another account');
    expect((await b2.request('list_domains', {})).params).toEqual({ domains: ['test', 'example.org'] });
    await eventually(() => again.membersOf('www.example.com') !== undefined);
  });

  it('--dns-server takes IP or IP:PORT; the default is the system resolver', () => {
    expect(loadConfig([]).dnsServer).toBeNull();
    expect(loadConfig(['--dns-server', '127.0.0.1:8053']).dnsServer).toBe('127.0.0.1:8053');
    expect(loadConfig(['--dns-server', '10.1.2.3']).dnsServer).toBe('10.1.2.3:53');
    expect(loadConfig(['--dns-server', '[::1]:5353']).dnsServer).toBe('[::1]:5353');
    expect(loadConfig(['--dns-server', '::1']).dnsServer).toBe('[::1]:53');
    expect(loadConfig([], { TFGATE_DNS_SERVER: '127.0.0.2:53' }).dnsServer).toBe('127.0.0.2:53');
    expect(() => loadConfig(['--dns-server', 'dns.example.com'])).toThrow(/--dns-server: expected IP or IP:PORT/);
    expect(() => loadConfig(['--dns-server', '127.0.0.1:99999'])).toThrow(/--dns-server/);
  });
});

describe('pending domain tokens per account', () => {
  /** Domains on a real SQLite store in a fresh state directory, whose TXT records hold every token prepared. */
  function domainsOnStore(clock: () => number, maxPendingPerAccount?: number) {
    const dir = mkdtempSync(join(tmpdir(), 'tfgate-domains-'));
    const store = openStore(dir, { now: clock });
    onTestFinished(() => {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const published = new Map<string, string>();
    const domains = new Domains({
      store,
      globalDomains: ['test'],
      lookupTxt: async (name) => ({ ok: true, records: [published.get(name) ?? ''] }),
      now: clock,
      randomBytes: (n) => new Uint8Array(n).map(() => Math.floor(Math.random() * 256)),
      ...(maxPendingPerAccount !== undefined ? { maxPendingPerAccount } : {}),
    });
    const prepare = (owner: string, domain: string) => {
      const prepared = domains.prepare(owner, domain);
      published.set(`tf-token.${prepared.domain}`, prepared.token);
      return prepared;
    };
    const refusal = (fn: () => unknown): string => {
      try {
        fn();
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error('expected a refusal');
    };
    return { domains, store, prepare, refusal };
  }

  it('refuses a prepare past the limit, saying what to do; a re-prepare does not count twice; a claim or an expiry frees a slot', async () => {
    let clock = Date.parse('2030-01-01T00:00:00Z');
    const { domains, store, prepare, refusal } = domainsOnStore(() => clock, 3);
    prepare('a', 'one.example');
    clock += 1000;
    prepare('a', 'two.example');
    prepare('a', 'three.example');
    // Re-preparing a name already pending replaces its token and takes no second slot.
    const again = prepare('a', 'two.example');
    expect(store.findDomainToken('a', 'two.example')?.token).toBe(again.token);
    expect(refusal(() => prepare('a', 'four.example'))).toBe(
      'four.example: this account already has 3 domains prepared and not yet claimed, the most one account may ' +
        '(--max-pending-domains-per-account): claim them (tfgate domains claim <domain>), or wait until a token expires ' +
        '(the next at 2030-01-01T06:00:00.000Z)',
    );
    expect(store.findDomainToken('a', 'four.example')).toBeUndefined();
    // The limit is per account.
    prepare('b', 'four.example');

    // A successful claim uses its token up and frees its slot.
    expect(await domains.claim('a', 'one.example')).toBe('one.example');
    prepare('a', 'four.example');
    expect(refusal(() => prepare('a', 'five.example'))).toMatch(/already has 3 domains prepared/);

    // An expired token is no longer pending (its claim still says "expired").
    clock = Date.parse('2030-01-01T06:00:01Z');
    prepare('a', 'five.example');
    await expect(domains.claim('a', 'two.example')).rejects.toThrow(/^token expired/);
  });

  it('allows 100 pending domains per account by default, through the control plane', async () => {
    const { gw } = await setup();
    const a = await gw.session();
    for (let i = 0; i < 100; i++) {
      expect((await a.request('prepare_domain', { domain: `name${i}.example` })).params.exception).toBeUndefined();
    }
    expect((await a.request('prepare_domain', { domain: 'name0.example' })).params.exception).toBeUndefined();
    expect(await exception(a, 'prepare_domain', { domain: 'name100.example' })).toMatch(
      /^name100\.example: this account already has 100 domains prepared and not yet claimed, .* \(--max-pending-domains-per-account\)/,
    );
  });

  it('--max-pending-domains-per-account is 100 unless set, and at least 1', () => {
    expect(loadConfig([]).limits.maxPendingDomainsPerAccount).toBe(100);
    expect(loadConfig(['--max-pending-domains-per-account', '5']).limits.maxPendingDomainsPerAccount).toBe(5);
    expect(() => loadConfig(['--max-pending-domains-per-account', '0'])).toThrow(/--max-pending-domains-per-account/);
  });
});

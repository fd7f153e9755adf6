import { describe, expect, it } from 'vitest';
import { cborShape, startTestControlPlane } from '../helpers/control-client.js';

const publish = (subdomain: string, containers: unknown[], extra: Record<string, unknown> = {}) => ({
  domain: 'test',
  subdomain,
  rewrite: null,
  ssl: null,
  containers,
  ...extra,
});

describe('control commands', () => {
  it('publish_web makes the route live before replying; the uuid becomes the cluster id', async () => {
    const gw = await startTestControlPlane();
    const client = await gw.session();
    const uuid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const reply = await client.request('publish_web', publish('www.', ['10.0.0.1:8080', { uuid: 'c1', address: '10.0.0.2' }]), uuid);
    expect(cborShape(reply.raw)).toEqual(['bytes', 'bytes', 'bytes', 'bytes', 'bytes']);
    expect(reply.command).toBe('');
    expect(reply.params).toEqual({});
    expect(cborShape(reply.paramsPlain)).toEqual({});
    expect(gw.routing.snapshot().routes['www.test']?.cluster).toBe(uuid.toString('hex'));
    expect(gw.membersOf('www.test')).toEqual(['10.0.0.1:8080', '10.0.0.2:80']);
    expect(gw.control.sessions()[0]?.fqdns).toEqual(['www.test']);
  });

  it('normalises the fqdn and accepts the apex and wildcards (these under a claimed domain)', async () => {
    const gw = await startTestControlPlane({ globalDomains: ['example.net'] });
    const keys = gw.addAccount();
    gw.claimDomain(keys, 'example.org');
    const client = await gw.session(keys);
    expect((await client.request('publish_web', { ...publish('WWW.', ['10.0.0.1:80']), domain: 'Example.ORG.' })).params).toEqual({});
    expect(gw.membersOf('www.example.org')).toEqual(['10.0.0.1:80']);
    expect((await client.request('publish_web', { ...publish('', ['10.0.0.2:80']), domain: 'example.org' })).params).toEqual({});
    expect(gw.membersOf('example.org')).toEqual(['10.0.0.2:80']);
    expect((await client.request('publish_web', { ...publish('*.apps.', ['10.0.0.3:80']), domain: 'example.org' })).params).toEqual({});
    expect(gw.membersOf('a.apps.example.org')).toEqual(['10.0.0.3:80']);
  });

  it('refuses a subdomain that does not end with a dot', async () => {
    const gw = await startTestControlPlane({ globalDomains: ['example.com'] });
    const client = await gw.session();
    const reply = await client.request('publish_web', { ...publish('evil', ['10.0.0.1:80']), domain: 'example.com' });
    expect(reply.params.exception).toMatch(/must be empty or end with "\."/);
    expect(cborShape(reply.paramsPlain)).toEqual({ exception: 'text' });
    expect(gw.membersOf('evilexample.com')).toBeUndefined();
    expect(gw.routing.snapshot().routes).toEqual({});
  });

  it('refuses names outside the global domains, static names, ssl, and bad members', async () => {
    const gw = await startTestControlPlane();
    gw.routing.setStatic([{ fqdn: 'static.test', cluster: 'static:static.test', members: ['10.9.9.9:80'], rewrite: null, source: 'static' }]);
    const client = await gw.session();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...publish('www.', ['10.0.0.1:80']), domain: 'example.com' }, /not under a domain this account may publish under/],
      [{ ...publish('x.', ['10.0.0.1:80']), domain: 'nottest' }, /not under a domain/],
      [publish('static.', ['10.0.0.1:80']), /static routes/],
      [publish('s.', ['10.0.0.1:80'], { ssl: '-----BEGIN CERTIFICATE-----' }), /s\.test: certificate refused: unparsable PEM/],
      [publish('b.', [Buffer.from('0123456789abcdef')]), /container 30313233.* cannot be resolved/],
      [publish('c.', [{ uuid: 'abc' }]), /container abc has no "address"/],
      [publish('d.', ['10.0.0.1:99999']), /port out of range/],
      [publish('e.', 'notalist' as unknown as unknown[]), /"containers" must be an array/],
      [{ ...publish('f.', []), domain: Buffer.from('test') }, /"domain" must be a text string/],
      [{ ...publish('g.', []), subdomain: 5 }, /"subdomain" must be a text string/],
      [publish('h.', [], { rewrite: 7 }), /"rewrite" must be a text string or null/],
      [publish('i.', [], { ssl: Buffer.from('x') }), /"ssl" must be a text string or null/],
    ];
    const before = gw.routing.snapshot();
    for (const [params, reason] of cases) {
      const reply = await client.request('publish_web', params);
      expect(reply.params.exception, JSON.stringify(params)).toMatch(reason);
    }
    expect(gw.routing.snapshot()).toBe(before);
  });

  it('add_to_cluster and remove_from_cluster change the members; unpublish_web removes the route', async () => {
    const gw = await startTestControlPlane();
    const client = await gw.session();
    const cluster = Buffer.from('cluster-0000001');
    await client.request('publish_web', publish('app.', ['10.0.0.1:80']), cluster);
    expect((await client.request('add_to_cluster', { cluster, container: '10.0.0.2:81' })).params).toEqual({});
    expect(gw.membersOf('app.test')).toEqual(['10.0.0.1:80', '10.0.0.2:81']);
    expect((await client.request('remove_from_cluster', { cluster, container: '10.0.0.1:80' })).params).toEqual({});
    expect(gw.membersOf('app.test')).toEqual(['10.0.0.2:81']);
    // remove_from_cluster without a uuid: no reply; a failure comes back as a `log` message.
    await client.tell('remove_from_cluster', { cluster, container: '10.0.0.7:80' });
    const log = await client.receive();
    expect(log.command).toBe('log');
    expect(log.uuid).toHaveLength(0);
    expect(cborShape(log.raw)).toEqual(['bytes', 'bytes', 'bytes', 'bytes', 'bytes']);
    expect(cborShape(log.paramsPlain)).toEqual({ error: 'true', log: 'text' });
    expect(log.params.log).toMatch(/10\.0\.0\.7:80 is not a member/);
    // unpublish_web without a uuid (as 20ft sends it): applied, no reply.
    await client.tell('unpublish_web', { cluster });
    const after = await client.request('list_domains', {});
    expect(after.params).toEqual({ domains: ['test'] });
    expect(cborShape(after.paramsPlain)).toEqual({ domains: ['text'] });
    expect(gw.membersOf('app.test')).toBeUndefined();
    expect(client.others).toEqual([]);
  });

  it('re-publishing an fqdn replaces the session\'s own cluster', async () => {
    const gw = await startTestControlPlane();
    const client = await gw.session();
    await client.request('publish_web', publish('app.', ['10.0.0.1:80']), Buffer.from('first'));
    await client.request('publish_web', publish('app.', ['10.0.0.2:80']), Buffer.from('second'));
    expect(gw.membersOf('app.test')).toEqual(['10.0.0.2:80']);
    expect(gw.routing.snapshot().routes['app.test']?.cluster).toBe(Buffer.from('second').toString('hex'));
    const old = await client.request('add_to_cluster', { cluster: Buffer.from('first'), container: '10.0.0.3:80' });
    expect(old.params.exception).toMatch(/no cluster/);
  });

  it('re-publishing a cluster id under another fqdn moves it, replacing the session\'s cluster there', async () => {
    const gw = await startTestControlPlane();
    const client = await gw.session();
    await client.request('publish_web', publish('app.', ['10.0.0.1:80']), Buffer.from('moving'));
    await client.request('publish_web', publish('other.', ['10.0.0.2:80']), Buffer.from('resident'));
    await client.request('publish_web', publish('other.', ['10.0.0.3:80']), Buffer.from('moving'));
    expect(gw.dataPlane.routes.current.lookup('app.test')).toBeUndefined();
    expect(gw.membersOf('other.test')).toEqual(['10.0.0.3:80']);
    expect(gw.routing.snapshot().routes['other.test']?.cluster).toBe(Buffer.from('moving').toString('hex'));
    const replaced = await client.request('add_to_cluster', { cluster: Buffer.from('resident'), container: '10.0.0.4:80' });
    expect(replaced.params.exception).toMatch(/no cluster/);
    // The name it left is free again, for this session or another.
    const other = await gw.session();
    await other.request('publish_web', publish('app.', ['10.0.0.5:80']), Buffer.from('newcomer'));
    expect(gw.membersOf('app.test')).toEqual(['10.0.0.5:80']);
  });

  it('two sessions: B cannot take, change or unpublish A\'s cluster', async () => {
    const gw = await startTestControlPlane();
    const a = await gw.session();
    const b = await gw.session();
    const cluster = Buffer.from('a-cluster');
    await a.request('publish_web', publish('a.', ['10.0.0.1:80']), cluster);
    const before = gw.routing.snapshot();
    expect((await b.request('publish_web', publish('a.', ['10.6.6.6:80']))).params.exception).toMatch(/published by another session/);
    expect((await b.request('unpublish_web', { cluster })).params.exception).toMatch(/belongs to another session/);
    expect((await b.request('add_to_cluster', { cluster, container: '10.6.6.6:80' })).params.exception).toMatch(/belongs to another session/);
    expect((await b.request('remove_from_cluster', { cluster, container: '10.0.0.1:80' })).params.exception).toMatch(/belongs to another session/);
    expect(gw.routing.snapshot()).toBe(before);
    expect(gw.membersOf('a.test')).toEqual(['10.0.0.1:80']);
    // A session of the same account is still another session.
    const a2 = await gw.session(a.keys);
    expect((await a2.request('unpublish_web', { cluster })).params.exception).toMatch(/belongs to another session/);
  });

  it('domain commands on unclaimed domains are refused clearly; unknown commands get an exception; heartbeat needs no reply', async () => {
    const gw = await startTestControlPlane();
    const client = await gw.session();
    for (const command of ['claim_domain', 'release_domain', 'make_domain_global', 'make_domain_private']) {
      const reply = await client.request(command, { domain: 'example.com' });
      expect(reply.params.exception).toMatch(/example\.com|run prepare first/);
    }
    expect((await client.request('frobnicate', {})).params.exception).toMatch(/unknown command "frobnicate"/);
    // publish_web without a uuid cannot name its cluster: refused with a log message, never an exception reply.
    await client.tell('publish_web', publish('nouuid.', ['10.0.0.1:80']));
    const refusal = await client.receive();
    expect(refusal).toMatchObject({ command: 'log', params: { error: true } });
    expect(refusal.params.log).toMatch(/needs a uuid/);
    expect(gw.membersOf('nouuid.test')).toBeUndefined();
    await client.tell('heartbeat', {});
    await client.tell('claim_domain', { domain: 'example.org' });
    const log = await client.receive();
    expect(log.command).toBe('log');
    expect(log.params).toMatchObject({ error: true });
    expect((await client.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    expect(client.others).toEqual([]);
  });
});

describe('cluster limit', () => {
  it('refuses a session more clusters than --max-clusters-per-session, but lets it replace its own', async () => {
    const gw = await startTestControlPlane({ maxClustersPerSession: 3 });
    const client = await gw.session();
    for (const name of ['a.', 'b.', 'c.']) expect((await client.request('publish_web', publish(name, ['10.0.0.1:80']))).params).toEqual({});
    const refused = await client.request('publish_web', publish('d.', ['10.0.0.1:80']));
    expect(refused.params.exception).toMatch(/already publishes 3 clusters.*--max-clusters-per-session/);
    expect(gw.membersOf('d.test')).toBeUndefined();
    // Republishing a name it holds replaces that cluster: not one more.
    expect((await client.request('publish_web', publish('a.', ['10.0.0.2:80']))).params).toEqual({});
    expect(gw.membersOf('a.test')).toEqual(['10.0.0.2:80']);
    // Another session has its own allowance.
    const other = await gw.session();
    expect((await other.request('publish_web', publish('d.', ['10.0.0.3:80']))).params).toEqual({});
  });
});

describe('rewrite', () => {
  it('is normalised as the routes file does it, port kept', async () => {
    const gw = await startTestControlPlane();
    const client = await gw.session();
    expect((await client.request('publish_web', publish('r.', ['10.0.0.1:80'], { rewrite: 'Inside.Example:81' }))).params).toEqual({});
    expect(gw.dataPlane.routes.current.lookup('r.test')?.rewrite).toBe('inside.example:81');
  });
});

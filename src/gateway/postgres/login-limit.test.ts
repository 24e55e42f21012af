import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../../../test/support/gateway-harness.js';
import { countReady, rawStartup } from '../../../test/support/gateway-raw-client.js';
import * as ser from './serializer.js';

let fx: GatewayFixture;
beforeAll(async () => {
  fx = await startGatewayFixture({ maxLoginsPerAddress: 3 });
});
afterAll(async () => {
  await fx?.stop();
});

const open = async (): Promise<{ s: Socket; got: () => string; closed: Promise<void> }> => {
  const s = connect({ host: '127.0.0.1', port: fx.port });
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  s.on('error', () => {});
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  await new Promise((r) => s.once('connect', r));
  return { s, got: () => text, closed };
};

describe('gateway: connections still logging in, per client address', () => {
  it('refuses one address more than its share of unfinished logins, and takes it again once they end', async () => {
    // Three connections that say nothing hold three login slots (until the login timeout).
    const idle = await Promise.all([open(), open(), open()]);
    await new Promise((r) => setTimeout(r, 100));
    const fourth = await open();
    await fourth.closed;
    expect(fourth.got()).toContain('too many connections from your address are still logging in');
    expect(fourth.got()).toContain('53300');
    for (const c of idle) c.s.destroy();
    await Promise.all(idle.map((c) => c.closed));
    await new Promise((r) => setTimeout(r, 100));
    // A real client gets in again (the slots were given back).
    const c = fx.client(fx.grant({ role: 'write' }));
    await c.connect();
    expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await c.end();
  });
});

/** Makes the authority decide logins only once `release` is called; `asked` settles at the first login it is asked about. */
function holdAuthority(): { asked: Promise<void>; release: () => void; restore: () => void } {
  let release = (): void => {};
  const decided = new Promise<void>((r) => (release = r));
  let onAsked = (): void => {};
  const asked = new Promise<void>((r) => (onAsked = r));
  const authorize = fx.authority.authorize.bind(fx.authority);
  fx.authority.authorize = async (input) => {
    onAsked();
    await decided;
    return authorize(input);
  };
  return {
    asked,
    release,
    restore: () => {
      release();
      fx.authority.authorize = authorize;
    },
  };
}

describe('gateway: what a client pipelines behind its password', () => {
  it('is not read while the authority decides (fourth review: 430 MiB in 3 s), and then runs, none of it lost', async () => {
    const { asked, release, restore } = holdAuthority();
    try {
      const s = await rawStartup(fx.port);
      // 128 queries of 1 MiB each (a comment pads them), behind the password, in one write.
      const pad = `-- ${'x'.repeat(1024 * 1024)}`;
      const queries = Array.from({ length: 128 }, (_, i) => ser.query(`select ${i} as n ${pad}`));
      const ready = countReady(s);
      let written = false;
      s.write(Buffer.concat([ser.passwordMessage(fx.authority.token(fx.grant({ role: 'read' }))), ...queries]), () => (written = true));
      await asked;
      // The write completes only once the gateway has read all but what the kernel's socket
      // buffers hold (up to 36 MiB here). Before, it read all 128 MiB within this second; now it
      // reads 64 KiB past the password and waits. (A slow host could only hide the bug, never fail the fix.)
      await new Promise((r) => setTimeout(r, 1000));
      expect(written).toBe(false);
      release();
      // Every query runs, in order: ReadyForQuery after the login, then one per query.
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          if (ready() >= 129 || s.destroyed) {
            clearInterval(t);
            resolve();
          }
        }, 20);
      });
      expect(ready()).toBe(129);
      s.end(ser.terminate());
    } finally {
      restore();
    }
  });
});

/** A raw client the gateway has asked for its password: what it has received so far, and its close. */
async function askedForPassword(): Promise<{ s: Awaited<ReturnType<typeof rawStartup>>; got: () => string; closed: Promise<void> }> {
  const s = await rawStartup(fx.port);
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  return { s, got: () => text, closed };
}

describe('gateway: bytes behind the password that do not frame', () => {
  it('end the grant\'s session as a protocol error, whenever they are read (review: read during the login, they made an anonymous refused login)', async () => {
    const { release, restore } = holdAuthority();
    try {
      const grant = fx.grant({ role: 'read' });
      const { s, got, closed } = await askedForPassword();
      const huge = Buffer.alloc(5);
      huge.write('Q', 0, 'latin1');
      huge.writeInt32BE(0x7fffffff, 1);
      s.write(Buffer.concat([ser.passwordMessage(fx.authority.token(grant)), ser.query('select 1'), huge]));
      // Read while the authority decides (had they come later, the session's relay would have read them).
      await new Promise((r) => setTimeout(r, 300));
      release();
      await closed;
      expect(got()).toMatch(/hallpass: protocol violation: message of \d+ bytes exceeds the limit/);
      await new Promise((r) => setTimeout(r, 50));
      const mine = fx.sink.events.filter((e) => e.grantId === grant);
      expect(mine.map((e) => e.type).filter((t) => t.startsWith('gateway.session') || t === 'gateway.refused')).toEqual(['gateway.session.start', 'gateway.session.end']);
      expect(mine.find((e) => e.type === 'gateway.session.end')?.data.reason).toBe('protocol_error');
      expect(fx.sink.ofType('gateway.refused').filter((e) => e.actor === '')).toEqual([]);
    } finally {
      restore();
    }
  });
});

describe('gateway: a client that half-closes during its login', () => {
  it('gets its answers and its session ends, with no backend left (review: both stayed until the grant ended)', async () => {
    const { asked, release, restore } = holdAuthority();
    try {
      const grant = fx.grant({ role: 'read' });
      const { s, got, closed } = await askedForPassword();
      s.end(Buffer.concat([ser.passwordMessage(fx.authority.token(grant)), ser.query("select 'answered' as a")]));
      await asked;
      await new Promise((r) => setTimeout(r, 100)); // the FIN reaches the login, not the session
      release();
      await closed;
      expect(got()).toContain('answered');
      await new Promise((r) => setTimeout(r, 50));
      expect(fx.sink.events.filter((e) => e.grantId === grant && e.type === 'gateway.session.end').map((e) => e.data.reason)).toEqual(['client_closed']);
    } finally {
      restore();
    }
  });
});

describe('gateway: refused attempts from anyone who can reach it', () => {
  let gx: GatewayFixture;
  beforeAll(async () => {
    // Few slots, so that sockets held open would fill them; a window longer than the test, so the
    // summary comes from the gateway's stop.
    gx = await startGatewayFixture({ maxConnections: 4, maxLoginsPerAddress: 1, refusalAudit: { windowMs: 600_000 } });
  });
  afterAll(async () => {
    await gx?.stop();
  });

  const plainStartup = async (localAddress = '127.0.0.1'): Promise<string> => {
    const s = connect({ host: '127.0.0.1', port: gx.port, localAddress });
    s.on('error', () => {});
    let text = '';
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    await new Promise((r) => s.once('connect', r));
    s.write(ser.startupMessage(new Map([['user', 'x'.repeat(5000)], ['database', 'app']])));
    await new Promise((r) => s.once('close', r));
    return text;
  };

  const answered = { tls_required: 0, too_many_logins: 0, other: 0 };

  it('are audited one by one up to a budget per address, and the rest counted in one summary (review: 6,650 rows a second without a token)', async () => {
    // One after another; an attempt that comes before the last one's session has quite ended is
    // refused over the login limit (53300) instead: both kinds count.
    for (let i = 0; i < 25; i++) {
      const answer = await plainStartup();
      answered[answer.includes('requires TLS') ? 'tls_required' : answer.includes('53300') ? 'too_many_logins' : 'other']++;
    }
    expect(answered.other).toBe(0);
    expect(answered.tls_required).toBeGreaterThan(10);
    await expect.poll(() => gx.sink.ofType('gateway.refused').length).toBe(10);
    const one = gx.sink.ofType('gateway.refused');
    // The claimed name is cut: a startup packet may carry 10 KB of it.
    expect(one[0]!.data.claimedActor ?? one[0]!.actor).toHaveLength(256);
    // Another address has its own budget.
    expect(await plainStartup('127.0.0.3')).toContain('requires TLS');
    await expect.poll(() => gx.sink.ofType('gateway.refused').length).toBe(11);
    expect(gx.sink.ofType('gateway.refused_summary')).toEqual([]);
  });

  it('over the per-address login limit are answered and closed at once, so they hold no connection slot (review: one address kept the gateway full)', async () => {
    // One connection logging in holds 127.0.0.1's one login slot (once the last test's sessions
    // are over: until then it is refused over the limit too, and counted).
    let idle: Socket | undefined;
    await expect.poll(async () => {
      const s = connect({ host: '127.0.0.1', port: gx.port });
      s.on('error', () => {});
      await new Promise((r) => s.once('connect', r));
      const answer = new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString('latin1'))));
      s.write(ser.sslRequest());
      if ((await answer) === 'S') idle = s;
      else {
        answered.too_many_logins++;
        s.destroy();
      }
      return idle !== undefined;
    }).toBe(true);
    // Ten more from there, which never close their side: each is refused (53300).
    const over = await Promise.all(Array.from({ length: 10 }, async () => {
      const s = connect({ host: '127.0.0.1', port: gx.port, allowHalfOpen: true });
      s.on('error', () => {});
      const answered = new Promise<string>((r) => s.once('data', (d: Buffer) => r(d.toString('latin1'))));
      await new Promise((r) => s.once('connect', r));
      expect(await answered).toContain('53300');
      return s;
    }));
    // With only 4 slots, someone else still gets in: the refused sockets were closed on our side
    // (they held their slots for a second after the answer).
    const other = connect({ host: '127.0.0.1', port: gx.port, localAddress: '127.0.0.2' });
    other.on('error', () => {});
    const answer = new Promise<string>((r) => {
      other.once('data', (d: Buffer) => r(d.toString('latin1')));
      other.once('close', () => r('(closed)'));
    });
    await new Promise((r) => other.once('connect', r));
    other.write(ser.sslRequest());
    expect(await answer).toBe('S');
    for (const s of [idle!, other, ...over]) s.destroy();
  });

  it('sum up what was counted when the gateway stops', async () => {
    await gx.gateway.close();
    const [summary] = gx.sink.ofType('gateway.refused_summary');
    // Every attempt is on the record: one by one (10), or counted here (the rest of the 25, the
    // 10 over the limit of the second test, and its probes refused over the limit).
    const codes = { tls_required: answered.tls_required - 10, too_many_logins: answered.too_many_logins + 10 };
    // (and the logins the second test's sockets abandoned when it closed them: protocol errors)
    const all = summary!.data.codes as Record<string, number>;
    expect(all).toMatchObject(codes);
    expect(Object.keys(all).filter((c) => !(c in codes))).toEqual(all.protocol_error === undefined ? [] : ['protocol_error']);
    const count = Object.values(all).reduce((a, b) => a + b, 0);
    expect(summary!.data.suppressed).toBe(count);
    expect(summary!.data.addresses).toEqual([{ address: '127.0.0.1', count, codes: all }]);
  });
});

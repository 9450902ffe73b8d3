// The recovery code: its shape and entropy, the leniency when it is typed back, and
// the vault identity sealed under it with age's scrypt recipient.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  answersRecoveryChallenge,
  formatRecoveryCode,
  generateVaultIdentity,
  newRecoveryCode,
  normalizeRecoveryCode,
  openWithRecoveryCode,
  recoveryCodeChallenge,
  sealToRecoveryCode,
} from '../src/vault-crypto.mjs';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

function kindOf(thunk) {
  try { thunk(); return 'accepted'; } catch (error) { return error.kind; }
}

describe('a new recovery code', () => {
  test('is 7 groups of 4 Crockford base32 characters: 140 bits', () => {
    const code = newRecoveryCode();
    assert.match(code, /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){6}$/);
    assert.ok(7 * 4 * Math.log2(32) >= 130);
  });

  test('never repeats and uses every character about equally often', () => {
    const codes = Array.from({ length: 2000 }, newRecoveryCode);
    assert.equal(new Set(codes).size, codes.length);
    const counts = new Map([...CROCKFORD].map((c) => [c, 0]));
    for (const code of codes) for (const c of code.replaceAll('-', '')) counts.set(c, counts.get(c) + 1);
    assert.equal(counts.size, 32, 'only the 32 Crockford characters');
    // 56,000 characters: 1750 expected per character; a biased generator (for
    // example modulo a non-power of two) would leave the band below.
    for (const [c, n] of counts) assert.ok(n > 1500 && n < 2000, `${c} appears ${n} times`);
    // Every position varies too (no fixed or constant group).
    for (let position = 0; position < 34; position++) {
      if (position % 5 === 4) continue;
      assert.ok(new Set(codes.map((code) => code[position])).size > 25, `position ${position}`);
    }
  });
});

describe('a recovery code typed back', () => {
  const code = 'ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345';

  test('reads the same in lower case, without dashes, with spaces', () => {
    const canonical = 'ABCDEFGHJKMNPQRSTVWXYZ012345';
    assert.equal(normalizeRecoveryCode(code), canonical);
    assert.equal(normalizeRecoveryCode(code.toLowerCase()), canonical);
    assert.equal(normalizeRecoveryCode(' abcd efgh jkmn pqrs tvwx yz01 2345 '), canonical);
    assert.equal(normalizeRecoveryCode('ABCD–EFGH—JKMN‑PQRS-TVWX-YZ01-2345'), canonical, 'typographic dashes');
    assert.equal(formatRecoveryCode(canonical.toLowerCase()), code);
  });

  test('reads O as 0 and I or L as 1, the letters the code never uses', () => {
    assert.equal(
      normalizeRecoveryCode('ABCD-EFGH-JKMN-PQRS-TVWX-YZOI-2345'),
      normalizeRecoveryCode('ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345'),
    );
    assert.equal(normalizeRecoveryCode('abcd-efgh-jkmn-pqrs-tvwx-yzol-2345').slice(22, 24), '01');
  });

  test('is refused when it cannot be a code, before any slow work', () => {
    assert.equal(kindOf(() => normalizeRecoveryCode('ABCD-EFGH')), 'malformed-code');
    assert.equal(kindOf(() => normalizeRecoveryCode(`${code}-6789`)), 'malformed-code');
    assert.equal(kindOf(() => normalizeRecoveryCode('UBCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345')), 'malformed-code');
    assert.equal(kindOf(() => normalizeRecoveryCode('ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-234!')), 'malformed-code');
    assert.equal(kindOf(() => normalizeRecoveryCode(undefined)), 'malformed-code');
  });

  test('the challenge names each of the 7 groups, and checks the answer leniently', () => {
    const seen = new Set();
    for (let i = 0; i < 300; i++) {
      const { index, number } = recoveryCodeChallenge(code);
      assert.equal(number, index + 1);
      assert.ok(index >= 0 && index < 7);
      seen.add(index);
    }
    assert.equal(seen.size, 7);
    assert.ok(answersRecoveryChallenge(code, 2, 'JKMN'));
    assert.ok(answersRecoveryChallenge(code, 5, 'yzo1'));
    assert.ok(!answersRecoveryChallenge(code, 2, 'JKMP'));
    assert.ok(!answersRecoveryChallenge(code, 3, 'JKMN'));
  });
});

describe('the vault identity sealed under the recovery code', () => {
  test('opens with the code however it is typed, not with another code', async (t) => {
    const { identity } = await generateVaultIdentity();
    const code = newRecoveryCode();

    let started = performance.now();
    const sealed = await sealToRecoveryCode(identity, code);
    const sealMs = performance.now() - started;
    t.diagnostic(`scrypt (age default, 2^18) to seal: ${sealMs.toFixed(0)} ms`);

    const text = new TextDecoder().decode(sealed);
    assert.ok(text.startsWith('age-encryption.org/v1\n-> scrypt '), 'an age file with a scrypt stanza');
    assert.match(text.split('\n')[1], / 18$/, "age's default work factor");
    assert.ok(!text.includes(identity));

    started = performance.now();
    const typed = code.toLowerCase().replaceAll('-', ' ');
    assert.equal(await openWithRecoveryCode(sealed, typed), identity);
    t.diagnostic(`scrypt to open: ${(performance.now() - started).toFixed(0)} ms`);

    let other = newRecoveryCode();
    while (other === code) other = newRecoveryCode();
    await assert.rejects(openWithRecoveryCode(sealed, other), { kind: 'wrong-code' });
  });

  test('a malformed code is refused without running scrypt', async () => {
    const started = performance.now();
    await assert.rejects(openWithRecoveryCode(new Uint8Array(10), 'nope'), { kind: 'malformed-code' });
    assert.ok(performance.now() - started < 200);
  });

  test('bytes that are not a sealed identity are refused as malformed', async () => {
    await assert.rejects(
      openWithRecoveryCode(new TextEncoder().encode('hello'), newRecoveryCode()),
      { kind: 'malformed' },
    );
  });
});

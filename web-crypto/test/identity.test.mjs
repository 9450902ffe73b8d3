// The vault identity: generated in the page, then kept as a WebCrypto key that
// cannot be exported. Node 20's WebCrypto has X25519, so the non-extractable path is
// the one tested here (browser.test.mjs repeats it in Chromium with the bundle).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Decrypter } from 'age-encryption';
import { generateVaultIdentity, importIdentity, openSealed, recipientOf, sealText } from '../src/vault-crypto.mjs';

describe('the vault identity', () => {
  test('is a new age X25519 key pair each time', async () => {
    const one = await generateVaultIdentity();
    const two = await generateVaultIdentity();
    assert.match(one.identity, /^AGE-SECRET-KEY-1[0-9A-Z]{58}$/);
    assert.match(one.recipient, /^age1[0-9a-z]{58}$/);
    assert.notEqual(one.identity, two.identity);
    assert.equal(await recipientOf(one.identity), one.recipient);
  });

  test('imports as a non-extractable X25519 key with the same recipient', async () => {
    const { identity, recipient } = await generateVaultIdentity();
    const key = await importIdentity(identity);
    assert.ok(key instanceof CryptoKey);
    assert.equal(key.type, 'private');
    assert.equal(key.extractable, false);
    assert.deepEqual(key.algorithm, { name: 'X25519' });
    assert.deepEqual(key.usages, ['deriveBits']);
    await assert.rejects(crypto.subtle.exportKey('pkcs8', key));
    await assert.rejects(crypto.subtle.exportKey('jwk', key));
    assert.equal(await recipientOf(key), recipient);
  });

  test('the imported key opens what was sealed to the recipient, as age itself would', async () => {
    const { identity, recipient } = await generateVaultIdentity();
    const sealed = await sealText(recipient, 'Attestation de résidence.pdf');
    const key = await importIdentity(identity);
    assert.equal(await openSealed(key, sealed), 'Attestation de résidence.pdf');
    assert.equal(await openSealed(identity, sealed), 'Attestation de résidence.pdf');
    const decrypter = new Decrypter();
    decrypter.addIdentity(key);
    assert.equal(await decrypter.decrypt(sealed, 'text'), 'Attestation de résidence.pdf');
  });

  test('anything but an age X25519 identity is refused', async () => {
    for (const bad of ['', 'AGE-SECRET-KEY-1', 'AGE-SECRET-KEY-PQ-1QQQQ', 'age1qqqq', 42]) {
      await assert.rejects(importIdentity(bad), { kind: 'malformed' }, String(bad));
    }
    const { identity } = await generateVaultIdentity();
    const typo = identity.slice(0, -1) + (identity.endsWith('Q') ? 'P' : 'Q');
    await assert.rejects(importIdentity(typo), { kind: 'malformed' }, 'bech32 checksum');
  });
});

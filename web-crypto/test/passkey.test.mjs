// Locking with a passkey: the key derived from the PRF output wraps the vault
// identity, another passkey's output does not open it, and the browser check reports
// plain reasons.

import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import {
  deriveWrappingKey,
  generateVaultIdentity,
  newPasskeySalt,
  passkeyPrfSupport,
  prfExtensionInput,
  prfOutputFrom,
  unwrapIdentity,
  wrapIdentity,
  WRAP_INFO,
} from '../src/vault-crypto.mjs';

const prfOutput = () => crypto.getRandomValues(new Uint8Array(32));

async function rejectsWithKind(promise, kind) {
  await assert.rejects(promise, (error) => {
    assert.equal(error.name, 'VaultCryptoError');
    assert.equal(error.kind, kind);
    return true;
  });
}

describe('wrapping the vault identity with a passkey', () => {
  test('the same PRF output and salt unwrap what they wrapped', async () => {
    const { identity } = await generateVaultIdentity();
    const prf = prfOutput();
    const salt = newPasskeySalt();
    const wrapped = await wrapIdentity(identity, await deriveWrappingKey(prf, salt));
    // Derived again, as at the next login: same passkey, same salt.
    assert.equal(await unwrapIdentity(wrapped, await deriveWrappingKey(prf, salt)), identity);
  });

  test('the wrapped bytes are a 12-byte IV, the ciphertext and a 16-byte tag', async () => {
    const { identity } = await generateVaultIdentity();
    const key = await deriveWrappingKey(prfOutput(), newPasskeySalt());
    const one = await wrapIdentity(identity, key);
    const two = await wrapIdentity(identity, key);
    assert.equal(one.length, 12 + identity.length + 16);
    assert.notDeepEqual(one.subarray(0, 12), two.subarray(0, 12), 'a fresh IV each time');
    assert.ok(!new TextDecoder().decode(one).includes('AGE-SECRET-KEY'));
  });

  test('the wrapping key cannot be exported', async () => {
    const key = await deriveWrappingKey(prfOutput(), newPasskeySalt());
    assert.equal(key.extractable, false);
    assert.deepEqual(key.algorithm, { name: 'AES-GCM', length: 256 });
    await assert.rejects(crypto.subtle.exportKey('raw', key));
  });

  test('the key is HKDF-SHA256 of the PRF output with the documented info string', async () => {
    // The server-side re-implementation (or a future version) must derive the same key.
    assert.equal(WRAP_INFO, 'e-guichet vault identity wrap v1');
    const prf = prfOutput();
    const salt = newPasskeySalt();
    const { identity } = await generateVaultIdentity();
    const wrapped = await wrapIdentity(identity, await deriveWrappingKey(prf, salt));
    const base = await crypto.subtle.importKey('raw', prf, 'HKDF', false, ['deriveBits']);
    const raw = await crypto.subtle.deriveBits(
      { name: 'HKDF', hash: 'SHA-256', salt, info: new TextEncoder().encode(WRAP_INFO) }, base, 256);
    const aes = await crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['decrypt']);
    const plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: wrapped.subarray(0, 12), additionalData: new TextEncoder().encode(WRAP_INFO) },
      aes, wrapped.subarray(12));
    assert.equal(new TextDecoder().decode(plain), identity);
  });

  test("another passkey's PRF output is refused as the wrong key", async () => {
    const { identity } = await generateVaultIdentity();
    const salt = newPasskeySalt();
    const wrapped = await wrapIdentity(identity, await deriveWrappingKey(prfOutput(), salt));
    await rejectsWithKind(unwrapIdentity(wrapped, await deriveWrappingKey(prfOutput(), salt)), 'wrong-key');
  });

  test('the right PRF output with another salt is refused as the wrong key', async () => {
    const { identity } = await generateVaultIdentity();
    const prf = prfOutput();
    const wrapped = await wrapIdentity(identity, await deriveWrappingKey(prf, newPasskeySalt()));
    await rejectsWithKind(unwrapIdentity(wrapped, await deriveWrappingKey(prf, newPasskeySalt())), 'wrong-key');
  });

  test('an altered wrapped identity is refused', async () => {
    const { identity } = await generateVaultIdentity();
    const key = await deriveWrappingKey(prfOutput(), newPasskeySalt());
    const wrapped = await wrapIdentity(identity, key);
    wrapped[20] ^= 1;
    await rejectsWithKind(unwrapIdentity(wrapped, key), 'wrong-key');
    await rejectsWithKind(unwrapIdentity(wrapped.subarray(0, 20), key), 'malformed');
  });

  test('PRF outputs and salts of the wrong size are refused before any derivation', async () => {
    await rejectsWithKind(deriveWrappingKey(new Uint8Array(16), newPasskeySalt()), 'malformed');
    await rejectsWithKind(deriveWrappingKey(prfOutput(), new Uint8Array(31)), 'malformed');
    const key = await deriveWrappingKey(prfOutput(), newPasskeySalt());
    await rejectsWithKind(wrapIdentity('not an identity', key), 'malformed');
  });
});

describe('what the browser can do', () => {
  const saved = {
    PublicKeyCredential: globalThis.PublicKeyCredential,
    navigator: Object.getOwnPropertyDescriptor(globalThis, 'navigator'),
  };
  afterEach(() => {
    globalThis.PublicKeyCredential = saved.PublicKeyCredential;
    if (saved.navigator) Object.defineProperty(globalThis, 'navigator', saved.navigator);
  });
  function browserWith(credentialClass) {
    globalThis.PublicKeyCredential = credentialClass;
    Object.defineProperty(globalThis, 'navigator', {
      value: { credentials: {} }, configurable: true, writable: true,
    });
  }

  test('a browser without passkeys says so', async () => {
    delete globalThis.PublicKeyCredential;
    assert.deepEqual(await passkeyPrfSupport(), { supported: false, reason: 'no-webauthn' });
  });

  test('a browser that reports PRF can lock', async () => {
    browserWith(class { static async getClientCapabilities() { return { 'extension:prf': true }; } });
    assert.deepEqual(await passkeyPrfSupport(), { supported: true });
  });

  test('a browser that reports no PRF cannot lock, and says why', async () => {
    browserWith(class { static async getClientCapabilities() { return { 'extension:prf': false }; } });
    assert.deepEqual(await passkeyPrfSupport(), { supported: false, reason: 'no-prf' });
  });

  test('a browser that cannot tell leaves the answer to registration', async () => {
    browserWith(class {});
    assert.deepEqual(await passkeyPrfSupport(), { supported: true, reason: 'prf-unknown' });
    browserWith(class { static async getClientCapabilities() { return {}; } });
    assert.deepEqual(await passkeyPrfSupport(), { supported: true, reason: 'prf-unknown' });
    browserWith(class { static async getClientCapabilities() { throw new Error('no'); } });
    assert.deepEqual(await passkeyPrfSupport(), { supported: true, reason: 'prf-unknown' });
  });
});

describe('PRF inputs and outputs of a WebAuthn ceremony', () => {
  test('the extension input asks for the first PRF output on the salt', () => {
    const salt = newPasskeySalt();
    assert.deepEqual(prfExtensionInput(salt), { prf: { eval: { first: salt } } });
  });

  test('the 32-byte output is read from the credential, ArrayBuffer or view', () => {
    const bytes = prfOutput();
    const credential = (first) => ({ getClientExtensionResults: () => ({ prf: { results: { first } } }) });
    assert.deepEqual(prfOutputFrom(credential(bytes.buffer)), bytes);
    assert.deepEqual(prfOutputFrom(credential(bytes)), bytes);
  });

  test('a passkey that returned no PRF output (Windows Hello) is refused', () => {
    const kinds = [
      { getClientExtensionResults: () => ({}) },
      { getClientExtensionResults: () => ({ prf: { enabled: true } }) },
      { getClientExtensionResults: () => ({ prf: { results: { first: new ArrayBuffer(16) } } }) },
      {},
    ].map((credential) => {
      try { prfOutputFrom(credential); return 'accepted'; } catch (error) { return error.kind; }
    });
    assert.deepEqual(kinds, ['no-prf', 'no-prf', 'no-prf', 'no-prf']);
  });
});

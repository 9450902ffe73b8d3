// The committed interoperability fixtures still open with this library:
// tests/fixtures/browser-age (written by make-fixture.mjs, read by the Rust tests too)
// and, once the Rust side writes one, tests/fixtures/rust-age in the same layout.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  decryptDocument,
  deriveWrappingKey,
  importIdentity,
  inspectHeader,
  openSealed,
  openWithRecoveryCode,
  unwrapIdentity,
} from '../src/vault-crypto.mjs';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'tests', 'fixtures');

for (const [name, writer] of [['browser-age', 'this library'], ['rust-age', 'the Rust server']]) {
  const dir = join(fixtures, name);
  const present = existsSync(join(dir, 'fixture.json'));
  const skip = !present && name === 'rust-age' ? 'the Rust side has not written tests/fixtures/rust-age yet' : false;

  describe(`the fixture written by ${writer} (tests/fixtures/${name})`, { skip }, () => {
    const read = (file) => readFile(join(dir, file)).then((b) => new Uint8Array(b));
    const manifest = () => readFile(join(dir, 'fixture.json'), 'utf8').then(JSON.parse);

    test('its document opens with its identity and has the expected bytes', async () => {
      const fixture = await manifest();
      const header = await read('document.header');
      assert.deepEqual(inspectHeader(header).stanzaTypes, ['X25519']);
      const key = await importIdentity(fixture.identity);
      const plaintext = await decryptDocument(key, header, new Blob([await read('document.payload')]).stream());
      const hash = createHash('sha256');
      let length = 0;
      for await (const chunk of plaintext) {
        hash.update(chunk);
        length += chunk.length;
      }
      assert.equal(length, fixture.document.plaintext_length);
      assert.equal(hash.digest('hex'), fixture.document.plaintext_sha256);
    });

    test('its sealed title opens', async () => {
      const fixture = await manifest();
      assert.equal(await openSealed(await importIdentity(fixture.identity), await read('title.age')), fixture.title);
    });

    test('its recovery file opens with its recovery code', { skip: !existsSync(join(dir, 'identity.recovery.age')) && 'no recovery file' }, async () => {
      const fixture = await manifest();
      assert.equal(await openWithRecoveryCode(await read('identity.recovery.age'), fixture.recovery_code), fixture.identity);
    });

    test('its wrapped identity opens with its PRF output and salt', { skip: !existsSync(join(dir, 'identity.wrapped')) && 'no wrapped identity' }, async () => {
      const fixture = await manifest();
      const key = await deriveWrappingKey(
        Uint8Array.from(Buffer.from(fixture.passkey.prf_output_hex, 'hex')),
        Uint8Array.from(Buffer.from(fixture.passkey.salt_hex, 'hex')),
      );
      assert.equal(await unwrapIdentity(await read('identity.wrapped'), key), fixture.identity);
    });
  });
}

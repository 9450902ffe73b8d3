// Writes tests/fixtures/browser-age/: a vault, a document, a sealed title, a recovery
// file and a passkey-wrapped identity, all made by this library as the page would,
// so the Rust side can check it reads what the browser writes. Run it only to
// replace the fixture on purpose (the keys are random, every file changes); the test
// in test/fixture.test.mjs checks the committed files still open here.

import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  deriveWrappingKey,
  encryptDocument,
  generateVaultIdentity,
  newPasskeySalt,
  newRecoveryCode,
  sealText,
  sealToRecoveryCode,
  wrapIdentity,
} from './src/vault-crypto.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'tests', 'fixtures', 'browser-age');
await mkdir(out, { recursive: true });

/** The document's bytes: byte i is i mod 251, so a test can also rebuild it. */
function fixturePlaintext(length) {
  return Uint8Array.from({ length }, (_, i) => i % 251);
}

// Three STREAM chunks: two full 64 KiB ones and a short last one.
const DOCUMENT_LENGTH = 150_000;
const TITLE = 'Avis d’imposition 2026 — exercice 2025.pdf';

const { identity, recipient } = await generateVaultIdentity();
const plaintext = fixturePlaintext(DOCUMENT_LENGTH);
const { header, payload } = encryptDocument(recipient, new Blob([plaintext]).stream());
const payloadBytes = new Uint8Array(await new Response(payload).arrayBuffer());
const code = newRecoveryCode();
const prfOutput = crypto.getRandomValues(new Uint8Array(32));
const salt = newPasskeySalt();

const hex = (bytes) => Buffer.from(bytes).toString('hex');
await writeFile(join(out, 'document.header'), await header);
await writeFile(join(out, 'document.payload'), payloadBytes);
await writeFile(join(out, 'title.age'), await sealText(recipient, TITLE));
await writeFile(join(out, 'identity.recovery.age'), await sealToRecoveryCode(identity, code));
await writeFile(join(out, 'identity.wrapped'), await wrapIdentity(identity, await deriveWrappingKey(prfOutput, salt)));
await writeFile(join(out, 'fixture.json'), JSON.stringify({
  identity,
  recipient,
  document: {
    plaintext_length: DOCUMENT_LENGTH,
    plaintext_rule: 'byte i is i mod 251',
    plaintext_sha256: createHash('sha256').update(plaintext).digest('hex'),
  },
  title: TITLE,
  recovery_code: code,
  passkey: { prf_output_hex: hex(prfOutput), salt_hex: hex(salt), info: 'e-guichet vault identity wrap v1' },
}, null, 2) + '\n');
console.log(`wrote ${out}`);

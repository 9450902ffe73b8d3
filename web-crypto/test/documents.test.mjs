// Documents in the server's storage format (header with nonce, payload apart) and
// the small sealed texts: round trips, streaming with bounded memory, and refusal of
// anything altered.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { Decrypter } from 'age-encryption';
import {
  decryptDocument,
  encryptDocument,
  generateVaultIdentity,
  headerRecipientCount,
  importIdentity,
  inspectHeader,
  openSealed,
  sealText,
} from '../src/vault-crypto.mjs';

const MiB = 1024 * 1024;

// A document produced lazily, piece by piece, recording how much was asked for, so a
// test can tell whether decryption waited for the whole input.
function lazyDocument(size, piece = 256 * 1024) {
  const state = { produced: 0 };
  const hash = createHash('sha256');
  state.stream = new ReadableStream({
    pull(controller) {
      if (state.produced >= size) {
        state.sha256 = hash.digest('hex');
        controller.close();
        return;
      }
      const n = Math.min(piece, size - state.produced);
      const bytes = new Uint8Array(n);
      for (let i = 0; i < n; i++) bytes[i] = ((state.produced + i) * 31 + ((state.produced + i) >> 12)) & 0xff;
      hash.update(bytes);
      state.produced += n;
      controller.enqueue(bytes);
    },
  }, { highWaterMark: 0 });
  return state;
}

// Plain Uint8Arrays (not Buffers), as in a browser.
const random = (n) => new Uint8Array(randomBytes(n));
const bytesOf = (text) => new TextEncoder().encode(text);
const streamOf = (bytes) => new Blob([bytes]).stream();
const readAll = async (stream) => new Uint8Array(await new Response(stream).arrayBuffer());

async function encrypted(recipient, plaintext) {
  const { header, payload } = encryptDocument(recipient, streamOf(plaintext));
  return { header: await header, payload: await readAll(payload) };
}

async function vault() {
  const { identity, recipient } = await generateVaultIdentity();
  return { identity, recipient, key: await importIdentity(identity) };
}

describe('sealed titles, file names and voucher codes', () => {
  test('open with the vault identity, in any script', async () => {
    const { recipient, key } = await vault();
    for (const text of ['Avis d’imposition 2026', 'naïve façade — 税 ✓.pdf', 'VCH-7K3M-QX9D', '']) {
      assert.equal(await openSealed(key, await sealText(recipient, text)), text);
    }
  });

  test('sealed to another vault, they are refused as not for this vault', async () => {
    const mine = await vault();
    const theirs = await vault();
    await assert.rejects(openSealed(mine.key, await sealText(theirs.recipient, 'x')), { kind: 'not-for-this-vault' });
  });

  test('altered, they are refused', async () => {
    const { recipient, key } = await vault();
    const sealed = await sealText(recipient, 'Allocation logement');
    sealed[sealed.length - 1] ^= 1;
    await assert.rejects(openSealed(key, sealed), { kind: 'tampered' });
  });

  test('only plain X25519 vault recipients are accepted', async () => {
    const { recipient } = await vault();
    for (const bad of ['', 'age1', recipient.toUpperCase(), recipient.slice(0, -1), 'age1pq1' + 'q'.repeat(60)]) {
      await assert.rejects(sealText(bad, 'x'), { kind: 'malformed' }, bad);
      assert.throws(() => encryptDocument(bad, new Blob(['x']).stream()), { kind: 'malformed' }, bad);
    }
  });
});

describe('the stored header of a document', () => {
  test('holds exactly one X25519 stanza and ends with the 16-byte nonce after the MAC line', async () => {
    const { recipient } = await vault();
    const { header, payload } = await encrypted(recipient, bytesOf('Bulletin de paie'));
    const text = new TextDecoder('latin1').decode(header);
    const lines = text.split('\n');
    assert.equal(lines[0], 'age-encryption.org/v1');
    assert.equal(lines.filter((l) => l.startsWith('-> ')).length, 1);
    assert.match(lines[1], /^-> X25519 [A-Za-z0-9+/]{43}$/);
    const macLineEnd = text.indexOf('\n', text.indexOf('\n---')+ 1) + 1;
    assert.match(text.slice(text.indexOf('\n---') + 1, macLineEnd), /^--- [A-Za-z0-9+/]{43}\n$/);
    assert.equal(header.length - macLineEnd, 16, 'the nonce, and nothing else, after the MAC line');
    assert.deepEqual(inspectHeader(header), { stanzaTypes: ['X25519'], headerLength: macLineEnd });
    assert.equal(headerRecipientCount(header), 1);
    // The payload is the STREAM chunks alone: one chunk of 16 bytes plus the tag.
    assert.equal(payload.length, 'Bulletin de paie'.length + 16);
  });

  test('joined to its payload, it is an ordinary age file', async () => {
    const { recipient, identity } = await vault();
    const plaintext = random(100_000);
    const { header, payload } = await encrypted(recipient, plaintext);
    const file = new Uint8Array(header.length + payload.length);
    file.set(header);
    file.set(payload, header.length);
    const decrypter = new Decrypter();
    decrypter.addIdentity(identity);
    assert.deepEqual(await decrypter.decrypt(file), plaintext);
  });

  test('a header without its nonce, or with bytes after it, is refused before decryption', async () => {
    const { recipient, key } = await vault();
    const { header, payload } = await encrypted(recipient, bytesOf('x'));
    assert.throws(() => inspectHeader(header.subarray(0, header.length - 16)), { kind: 'malformed' });
    await assert.rejects(decryptDocument(key, header.subarray(0, header.length - 1), streamOf(payload)), { kind: 'malformed' });
    const longer = new Uint8Array(header.length + 1);
    longer.set(header);
    await assert.rejects(decryptDocument(key, longer, streamOf(payload)), { kind: 'malformed' });
    assert.throws(() => inspectHeader(bytesOf('hello\n--- x\n0123456789abcdef')), { kind: 'malformed' });
  });
});

describe('a document', () => {
  test('of any size round-trips, including empty and exact 64 KiB multiples', async () => {
    const { recipient, key } = await vault();
    for (const size of [0, 1, 65_535, 65_536, 65_537, 3 * 65_536, 200_001]) {
      const plaintext = random(size);
      const { header, payload } = await encrypted(recipient, plaintext);
      const out = await readAll(await decryptDocument(key, header, streamOf(payload)));
      assert.deepEqual(out, plaintext, `${size} bytes`);
    }
  });

  test('header and payload can be read in either order', async () => {
    const { recipient, key } = await vault();
    const plaintext = random(150_000);
    const { header, payload } = encryptDocument(recipient, streamOf(plaintext));
    const payloadBytes = await readAll(payload); // before awaiting the header
    const out = await readAll(await decryptDocument(key, await header, streamOf(payloadBytes)));
    assert.deepEqual(out, plaintext);
  });

  test('of 20 MiB streams through encryption and decryption chunk by chunk', async (t) => {
    const { recipient, key } = await vault();
    const source = lazyDocument(20 * MiB);
    const started = performance.now();
    const { header, payload } = encryptDocument(recipient, source.stream);
    // The payload goes straight from encryption into decryption, as from the
    // object store to the page: nothing holds the whole document.
    const plaintext = await decryptDocument(key, await header, payload);
    const hash = createHash('sha256');
    let received = 0;
    let chunks = 0;
    let largestChunk = 0;
    let producedAtFirstChunk = null;
    let maxLag = 0;
    for await (const chunk of plaintext) {
      if (producedAtFirstChunk === null) producedAtFirstChunk = source.produced;
      hash.update(chunk);
      received += chunk.length;
      chunks += 1;
      largestChunk = Math.max(largestChunk, chunk.length);
      maxLag = Math.max(maxLag, source.produced - received);
    }
    const seconds = (performance.now() - started) / 1000;
    t.diagnostic(`20 MiB encrypted and decrypted in ${seconds.toFixed(2)} s (${(20 / seconds).toFixed(1)} MiB/s); ` +
      `${chunks} chunks; at most ${(maxLag / MiB).toFixed(2)} MiB read ahead of the output`);
    assert.equal(received, 20 * MiB);
    assert.equal(hash.digest('hex'), source.sha256);
    assert.equal(largestChunk, 64 * 1024, "age's 64 KiB STREAM chunks");
    assert.equal(chunks, 320);
    assert.ok(producedAtFirstChunk < 2 * MiB, `the first plaintext came after reading ${producedAtFirstChunk} bytes`);
    assert.ok(maxLag < 2 * MiB, `the input never ran more than ${maxLag} bytes ahead of the output`);
  });

  // Reads a decrypted stream to its end, returning how many bytes came before an error.
  async function readUntilError(stream) {
    let before = 0;
    try {
      for await (const chunk of stream) before += chunk.length;
    } catch (error) {
      return { error, before };
    }
    return { error: null, before };
  }

  test('with one payload byte flipped makes the stream fail as tampered', async () => {
    const { recipient, key } = await vault();
    const plaintext = random(300_000);
    const { header, payload } = await encrypted(recipient, plaintext);
    for (const position of [0, 70_000, payload.length - 1]) {
      const altered = payload.slice();
      altered[position] ^= 0x01;
      const { error, before } = await readUntilError(await decryptDocument(key, header, streamOf(altered)));
      assert.equal(error?.kind, 'tampered', `byte ${position}`);
      assert.ok(before < plaintext.length);
    }
  });

  test('cut short, or with bytes added, makes the stream fail rather than end early', async () => {
    const { recipient, key } = await vault();
    const plaintext = random(3 * 65_536 + 100);
    const { header, payload } = await encrypted(recipient, plaintext);
    const cuts = [
      payload.subarray(0, payload.length - 1),
      payload.subarray(0, 2 * (65_536 + 16)), // exactly at a chunk boundary
      payload.subarray(0, 0),
    ];
    for (const cut of cuts) {
      const { error } = await readUntilError(await decryptDocument(key, header, streamOf(cut)));
      assert.ok(error?.kind === 'tampered' || error?.kind === 'malformed', `cut at ${cut.length}: ${error?.kind}`);
    }
    const longer = new Uint8Array(payload.length + 1);
    longer.set(payload);
    assert.equal((await readUntilError(await decryptDocument(key, header, streamOf(longer)))).error?.kind, 'tampered');
  });

  test('with an altered header is refused before any byte is produced', async () => {
    const { recipient, key } = await vault();
    const { header, payload } = await encrypted(recipient, bytesOf('Décision CPAS'));
    const text = new TextDecoder('latin1').decode(header);
    const macAt = text.indexOf('\n--- ') + 5;
    const badMac = header.slice();
    badMac[macAt] = badMac[macAt] === 0x41 ? 0x42 : 0x41;
    await assert.rejects(decryptDocument(key, badMac, streamOf(payload)), { kind: 'tampered' });
    const badNonce = header.slice();
    badNonce[badNonce.length - 1] ^= 1;
    const { error } = await readUntilError(await decryptDocument(key, badNonce, streamOf(payload)));
    assert.equal(error?.kind, 'tampered', 'a changed nonce gives another payload key');
  });

  test('given bytes or a Blob instead of a stream, is refused rather than read whole', async () => {
    const { recipient, key } = await vault();
    const { header, payload } = await encrypted(recipient, bytesOf('x'));
    assert.throws(() => encryptDocument(recipient, bytesOf('x')), { kind: 'malformed' });
    assert.throws(() => encryptDocument(recipient, new Blob(['x'])), { kind: 'malformed' });
    await assert.rejects(decryptDocument(key, header, payload), { kind: 'malformed' });
  });

  test("encrypted to another vault is refused as not for this vault", async () => {
    const mine = await vault();
    const theirs = await vault();
    const { header, payload } = await encrypted(theirs.recipient, bytesOf('x'));
    await assert.rejects(decryptDocument(mine.key, header, streamOf(payload)), { kind: 'not-for-this-vault' });
  });

  test('whose download fails midway errors as interrupted, not tampered', async () => {
    const { recipient, key } = await vault();
    const { header, payload } = await encrypted(recipient, random(200_000));
    let sent = false;
    const failing = new ReadableStream({
      pull(controller) {
        if (!sent) { controller.enqueue(payload.subarray(0, 100_000)); sent = true; return; }
        controller.error(new TypeError('network error'));
      },
    });
    const { error } = await readUntilError(await decryptDocument(key, header, failing));
    assert.equal(error?.kind, 'interrupted');
  });

  test('cancelling the decrypted stream cancels the download', async () => {
    const { recipient, key } = await vault();
    const { header, payload } = await encrypted(recipient, random(500_000));
    let cancelled = false;
    let offset = 0;
    const download = new ReadableStream({
      pull(controller) {
        controller.enqueue(payload.subarray(offset, offset + 50_000));
        offset += 50_000;
        if (offset >= payload.length) controller.close();
      },
      cancel() { cancelled = true; },
    }, { highWaterMark: 0 });
    const reader = (await decryptDocument(key, header, download)).getReader();
    await reader.read();
    await reader.cancel('the citizen closed the dialog');
    // Cancellation travels back through the pipes between the streams a few ticks later.
    for (let i = 0; i < 20 && !cancelled; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.ok(cancelled);
    assert.ok(offset < payload.length);
  });
});

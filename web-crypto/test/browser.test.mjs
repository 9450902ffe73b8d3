// The built bundle, static/vault-crypto.js, in Debian's Chromium: loaded by a page
// under a strict CSP, locking with a passkey from the DevTools virtual authenticator
// (PRF on and off), the vault key imported non-extractable, and documents decrypted
// in the page, including the committed fixture. Needs Chromium and e2e's
// playwright-core (`npm ci --prefix e2e`); CI sets REQUIRE_BROWSER=1 so that their
// absence fails instead of skipping.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as source from '../src/vault-crypto.mjs';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bundlePath = join(repo, 'static', 'vault-crypto.js');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

test('the bundle exports exactly what the sources export', async () => {
  const bundle = await import(bundlePath);
  assert.deepEqual(Object.keys(bundle).sort(), Object.keys(source).sort());
});

function findPlaywright() {
  try {
    return createRequire(join(repo, 'e2e', 'package.json')).resolve('playwright-core');
  } catch {
    return null;
  }
}
const playwrightPath = findPlaywright();
const missing = !existsSync(CHROMIUM) ? `needs Chromium at ${CHROMIUM}`
  : !playwrightPath ? 'needs playwright-core (npm ci --prefix e2e)' : null;
if (missing && process.env.REQUIRE_BROWSER === '1') throw new Error(missing);

// The page the bundle runs in: no inline script, scripts from the origin only, as the
// portal serves it.
const PAGE = '<!doctype html><html lang="en"><title>vault crypto</title><script type="module" src="/page.js"></script>';
const PAGE_SCRIPT = `
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => window.cspViolations.push(e.violatedDirective));
import('/static/vault-crypto.js').then((m) => { window.vaultCrypto = m; document.title = 'ready'; });
`;
const FILES = {
  '/': ['text/html', () => PAGE],
  '/page.js': ['text/javascript', () => PAGE_SCRIPT],
  '/static/vault-crypto.js': ['text/javascript', () => readFileSync(bundlePath)],
};
for (const name of ['fixture.json', 'document.header', 'document.payload', 'title.age']) {
  FILES[`/fixture/${name}`] = ['application/octet-stream', () => readFileSync(join(repo, 'tests', 'fixtures', 'browser-age', name))];
}

describe('the bundle in Chromium', { skip: missing ?? false }, () => {
  let server;
  let browser;
  let origin;

  before(async () => {
    server = createServer((request, response) => {
      const file = FILES[new URL(request.url, 'http://x').pathname];
      if (!file) { response.writeHead(404).end(); return; }
      response.writeHead(200, {
        'content-type': file[0],
        'content-security-policy': "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'",
      });
      response.end(file[1]());
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    // "localhost" is a secure context and a valid WebAuthn relying-party id; an IP is not.
    origin = `http://localhost:${server.address().port}`;
    const { chromium } = createRequire(import.meta.url)(playwrightPath);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-component-update',
        // For the memory check: an exact heap size, and gc() to tell garbage from what is kept.
        '--enable-precise-memory-info', '--js-flags=--expose-gc',
      ],
    });
  });

  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
  });

  // A fresh tab on the test page, with a virtual passkey authenticator.
  async function openPage(hasPrf) {
    const context = await browser.newContext();
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
        hasUserVerification: true, isUserVerified: true, hasPrf,
      },
    });
    await page.goto(origin + '/');
    await page.waitForFunction(() => document.title === 'ready');
    return { page, context };
  }

  test('locks with a PRF passkey and opens a document with the non-extractable key', async () => {
    const { page, context } = await openPage(true);
    const result = await page.evaluate(async () => {
      const v = window.vaultCrypto;
      const support = await v.passkeyPrfSupport();
      const rp = { id: location.hostname, name: 'e-guichet test' };
      const challenge = () => crypto.getRandomValues(new Uint8Array(32));

      // Locking: register a passkey, then ask it for its PRF output.
      const salt = v.newPasskeySalt();
      const created = await navigator.credentials.create({ publicKey: {
        rp, challenge: challenge(),
        user: { id: crypto.getRandomValues(new Uint8Array(16)), name: 'citizen', displayName: 'Citizen' },
        pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
        authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
        extensions: v.prfExtensionInput(salt),
      } });
      const getPrf = async () => v.prfOutputFrom(await navigator.credentials.get({ publicKey: {
        rpId: rp.id, challenge: challenge(), userVerification: 'required',
        allowCredentials: [{ type: 'public-key', id: created.rawId }],
        extensions: v.prfExtensionInput(salt),
      } }));
      const { identity, recipient } = await v.generateVaultIdentity();
      const wrapped = await v.wrapIdentity(identity, await v.deriveWrappingKey(await getPrf(), salt));

      // The server encrypts nothing; a sender encrypts a document to the recipient.
      const size = 3 * 1024 * 1024 + 12345;
      const plain = new Uint8Array(size).map((_, i) => (i * 7) & 0xff);
      const { header, payload } = v.encryptDocument(recipient, new Blob([plain]).stream());
      const headerBytes = await header;
      const payloadBlob = await new Response(payload).blob();
      const title = await v.sealText(recipient, 'Avis d’imposition 2026');

      // Opening, as after the next login: another assertion, same PRF output.
      const unwrapped = await v.unwrapIdentity(wrapped, await v.deriveWrappingKey(await getPrf(), salt));
      const key = await v.importIdentity(unwrapped);
      let exportRefused = false;
      try { await crypto.subtle.exportKey('pkcs8', key); } catch { exportRefused = true; }

      const out = await v.decryptDocument(key, headerBytes, payloadBlob.stream());
      let chunks = 0;
      const received = [];
      for (const reader = out.getReader(); ;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks += 1;
        received.push(value);
      }
      const decrypted = new Uint8Array(await new Blob(received).arrayBuffer());

      // A flipped payload byte.
      const altered = new Uint8Array(await payloadBlob.arrayBuffer());
      altered[100_000] ^= 1;
      let alteredKind = null;
      // Read with a reader: Chromium's Response(stream).arrayBuffer() replaces the
      // stream's error by a bare TypeError, losing its kind.
      try {
        const reader = (await v.decryptDocument(key, headerBytes, new Blob([altered]).stream())).getReader();
        while (!(await reader.read()).done);
      } catch (e) { alteredKind = e.kind; }

      return {
        support,
        sameKey: unwrapped === identity,
        key: { type: key.constructor.name, extractable: key.extractable, algorithm: key.algorithm.name },
        exportRefused,
        recipientMatches: (await v.recipientOf(key)) === recipient,
        title: await v.openSealed(key, title),
        identical: decrypted.length === plain.length && decrypted.every((b, i) => b === plain[i]),
        chunks,
        alteredKind,
        csp: window.cspViolations,
      };
    });
    await context.close();
    assert.deepEqual(result.support, { supported: true });
    assert.ok(result.sameKey);
    assert.deepEqual(result.key, { type: 'CryptoKey', extractable: false, algorithm: 'X25519' });
    assert.ok(result.exportRefused);
    assert.ok(result.recipientMatches);
    assert.equal(result.title, 'Avis d’imposition 2026');
    assert.ok(result.identical);
    assert.equal(result.chunks, 49, '64 KiB at a time');
    assert.equal(result.alteredKind, 'tampered');
    assert.deepEqual(result.csp, []);
  });

  test('a 32 MiB document streams through the page without being held whole', async (t) => {
    const { page, context } = await openPage(true);
    const result = await page.evaluate(async () => {
      const v = window.vaultCrypto;
      const { identity, recipient } = await v.generateVaultIdentity();
      const key = await v.importIdentity(identity);
      const size = 32 * 1024 * 1024;
      let produced = 0;
      const source = new ReadableStream({
        pull(controller) {
          if (produced >= size) { controller.close(); return; }
          const piece = new Uint8Array(Math.min(256 * 1024, size - produced));
          for (let i = 0; i < piece.length; i++) piece[i] = (produced + i) % 253;
          produced += piece.length;
          controller.enqueue(piece);
        },
      }, { highWaterMark: 0 });
      gc();
      const heapBefore = performance.memory.usedJSHeapSize;
      const started = performance.now();
      const { header, payload } = v.encryptDocument(recipient, source);
      const reader = (await v.decryptDocument(key, await header, payload)).getReader();
      let received = 0;
      let maxLag = 0;
      let wrong = 0;
      let peakHeap = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (value[0] !== received % 253 || value[value.length - 1] !== (received + value.length - 1) % 253) wrong += 1;
        received += value.length;
        maxLag = Math.max(maxLag, produced - received);
        peakHeap = Math.max(peakHeap, performance.memory.usedJSHeapSize);
      }
      const seconds = (performance.now() - started) / 1000;
      // Collected twice around a task boundary so the streams' last promises settle.
      gc();
      await new Promise((resolve) => setTimeout(resolve, 50));
      gc();
      const kept = performance.memory.usedJSHeapSize - heapBefore;
      return { received, size, wrong, maxLag, seconds, peakHeap: peakHeap - heapBefore, kept };
    });
    await context.close();
    const MiB = 1024 * 1024;
    t.diagnostic(`Chromium: 32 MiB encrypted and decrypted in ${result.seconds.toFixed(2)} s ` +
      `(${(32 / result.seconds).toFixed(1)} MiB/s each way, both in one thread); input at most ` +
      `${(result.maxLag / MiB).toFixed(2)} MiB ahead of the output; JS heap grew by ${(result.peakHeap / MiB).toFixed(1)} MiB ` +
      `at most (garbage V8 has not collected yet: a plain stream with no crypto grows it alike), ` +
      `${(result.kept / MiB).toFixed(1)} MiB kept after collection`);
    assert.equal(result.received, result.size);
    assert.equal(result.wrong, 0);
    assert.ok(result.maxLag < 2 * MiB, `the input ran ${result.maxLag} bytes ahead of the output`);
    assert.ok(result.kept < 4 * MiB, `${result.kept} bytes still held once the document was read`);
  });

  test('a passkey without PRF is refused with the no-prf reason', async () => {
    const { page, context } = await openPage(false);
    const kind = await page.evaluate(async () => {
      const v = window.vaultCrypto;
      const created = await navigator.credentials.create({ publicKey: {
        rp: { id: location.hostname, name: 'e-guichet test' },
        challenge: crypto.getRandomValues(new Uint8Array(32)),
        user: { id: crypto.getRandomValues(new Uint8Array(16)), name: 'citizen', displayName: 'Citizen' },
        pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
        authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
        extensions: v.prfExtensionInput(v.newPasskeySalt()),
      } });
      try { v.prfOutputFrom(created); return 'accepted'; } catch (e) { return e.kind; }
    });
    await context.close();
    assert.equal(kind, 'no-prf');
  });

  test('opens the committed fixture', async () => {
    const { page, context } = await openPage(true);
    const result = await page.evaluate(async () => {
      const v = window.vaultCrypto;
      const bytes = async (name) => new Uint8Array(await (await fetch(`/fixture/${name}`)).arrayBuffer());
      const fixture = await (await fetch('/fixture/fixture.json')).json();
      const key = await v.importIdentity(fixture.identity);
      const payload = (await fetch('/fixture/document.payload')).body;
      const plain = await new Response(await v.decryptDocument(key, await bytes('document.header'), payload)).arrayBuffer();
      const digest = [...new Uint8Array(await crypto.subtle.digest('SHA-256', plain))]
        .map((b) => b.toString(16).padStart(2, '0')).join('');
      return { ok: digest === fixture.document.plaintext_sha256, title: await v.openSealed(key, await bytes('title.age')) === fixture.title };
    });
    await context.close();
    assert.deepEqual(result, { ok: true, title: true });
  });
});

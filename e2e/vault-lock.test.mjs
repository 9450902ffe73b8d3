// A citizen locks her vault with a passkey, in a real browser against the real server:
// the recovery code shown once and checked, the vault opened again after a new login
// with the passkey (DevTools' virtual authenticator, with the PRF extension), a
// document's title read and the document downloaded, decrypted in the page, byte for
// byte; a second passkey added and removed; the recovery code opening the vault in a
// browser with no passkey at all, after a mistyped code; a document altered in storage
// refused without being saved; and a passkey without PRF, or a page that does not
// hold the key it asks the vault to move to, refused before anything changes. Every
// page goes through the checks of support.mjs.
//
// Passkeys refuse an IP address as their origin: the browser uses http://localhost.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import {
  DESKTOP,
  Journey,
  MOBILE,
  Server,
  launchBrowser,
  logInAsMarie,
  withAuthenticator,
} from './support.mjs';

const AGENT_EMAIL = 'agent@mairie.example';
const TITLE = 'Attestation de quotient familial 2026';
const FILE_NAME = 'quotient-familial-2026.pdf';
// Larger than one 64 KiB age chunk, with non-ASCII bytes, so that the download is
// compared across chunk boundaries.
const DOCUMENT = Buffer.concat([
  Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1'),
  Buffer.from(Array.from({ length: 150_000 }, (_, i) => (i * 31 + 7) & 0xff)),
  Buffer.from('\n%%EOF\n', 'latin1'),
]);

const LOCK = "Verrouiller mon coffre avec une clé d'accès";
const OPEN_WITH_PASSKEY = "Ouvrir mon coffre avec ma clé d'accès";
const LOCKED_PLACEHOLDER = 'Document verrouillé';

let server;
let browser;
/** The recovery code shown when the vault was locked, for the journeys after it. */
let recoveryCode = null;

async function deliverDocument(token) {
  const metadata = {
    recipient: {
      pivot: {
        family_name: 'Dupont',
        given_names: 'Marie Claire',
        birthdate: '1980-07-30',
        birthplace: '75056',
      },
    },
    title: TITLE,
    category: 'famille',
  };
  const form = new FormData();
  form.append('metadata', new Blob([JSON.stringify(metadata)], { type: 'application/json' }));
  form.append('file', new Blob([DOCUMENT], { type: 'application/pdf' }), FILE_NAME);
  const response = await fetch(`${server.direct}/api/v1/documents`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Idempotency-Key': 'e2e-quotient-2026' },
    body: form,
  });
  const body = await response.text();
  assert.equal(response.status, 201, `delivery refused: ${body}`);
}

async function logOut(journey) {
  const { page } = journey;
  await page.getByRole('banner').getByRole('button', { name: 'Se déconnecter' }).click();
  await page.waitForURL((url) => url.pathname.startsWith('/logout'));
  await journey.heading().filter({ hasText: 'Vous êtes déconnecté' }).waitFor();
}

/** The stored payload of the document: age adds 16 bytes to each 64 KiB chunk. */
function storedPayload(dir) {
  const size = DOCUMENT.length + 16 * Math.ceil(DOCUMENT.length / 65536);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const found = storedPayload(path);
      if (found) return found;
    } else if (statSync(path).size === size) {
      return path;
    }
  }
  return null;
}

function alert(page, text) {
  return page.getByRole('alert').filter({ hasText: text });
}

describe('a vault locked with a passkey', { timeout: 300_000 }, () => {
  before(async () => {
    server = await Server.start({ localhost: true });
    server.run(['agent', 'create', '--email', AGENT_EMAIL, '--role', 'agent']);
    const token = server.run(['agent', 'token', '--email', AGENT_EMAIL]).trim();
    await deliverDocument(token);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('a passkey without PRF cannot lock the vault, and nothing changes', { timeout: 60_000 }, async () => {
    const journey = await Journey.open(browser, 'no-prf', { viewport: DESKTOP, locale: 'fr-FR' });
    try {
      const { page } = journey;
      await withAuthenticator(journey, { hasPrf: false });
      await logInAsMarie(journey, server.base);
      await page.getByRole('link', { name: LOCK }).click();
      await page.waitForURL(`${server.base}/vault/security`);
      assert.equal(await journey.heading().innerText(), 'Sécurité de mon coffre');
      await page.getByRole('button', { name: LOCK }).click();
      await alert(page, 'ne permet pas de verrouiller un coffre').waitFor();
      await journey.check('security-no-prf');
      assert.equal(await page.locator('#recovery-code-shown').isVisible(), false, 'no code shown');

      // The vault is still open: the list shows the title, served as before.
      await page.goto(`${server.base}/vault`);
      assert.equal(await page.getByRole('link', { name: TITLE }).count(), 1);
      journey.assertClean();
    } finally {
      await journey.close();
    }
  });

  test('a lock whose proof of the new key is wrong is refused, and nothing changes', { timeout: 60_000 }, async () => {
    const journey = await Journey.open(browser, 'proof-mismatch', { viewport: DESKTOP, locale: 'fr-FR' });
    try {
      const { page } = journey;
      await withAuthenticator(journey);
      await logInAsMarie(journey, server.base);
      // A page that does not hold the identity it asks the vault to move to: the
      // value sealed to that identity comes back wrong.
      let answered = null;
      await page.route('**/vault/security/lock/finish', async (route) => {
        const body = JSON.parse(route.request().postData());
        const response = await route.fetch({
          postData: JSON.stringify({ ...body, proof: '0'.repeat(64) }),
        });
        answered = { status: response.status(), body: await response.json() };
        await route.fulfill({ response });
      });
      await page.getByRole('link', { name: LOCK }).click();
      await page.waitForURL(`${server.base}/vault/security`);
      await page.getByRole('button', { name: LOCK }).click();
      const shown = page.locator('#recovery-code-shown');
      await shown.waitFor();
      const code = (await shown.innerText()).replace(/\s/g, '');
      const group = Number((await page.locator('#challenge-label').innerText()).match(/\d/)[0]);
      await page.getByLabel(/^Recopiez le groupe n° \d$/).fill(code.split('-')[group - 1]);
      journey.expectedStatus = { url: `${server.base}/vault/security/lock/finish`, status: 400 };
      await page.getByRole('button', { name: 'Confirmer et verrouiller mon coffre' }).click();
      await alert(page, "L'opération n'a pas abouti et votre coffre n'a pas changé").waitFor();
      journey.expectedStatus = null;
      assert.deepEqual(answered, { status: 400, body: { error: 'proof_mismatch' } });
      await page.unroute('**/vault/security/lock/finish');

      // Still open: the list shows the title, served as before.
      await page.goto(`${server.base}/vault`);
      assert.equal(await page.getByRole('link', { name: TITLE }).count(), 1);
      journey.assertClean();
    } finally {
      await journey.close();
    }
  });

  test('locked with a passkey, opened again after a new login, a passkey added and removed', { timeout: 180_000 }, async () => {
    const journey = await Journey.open(browser, 'lock', {
      viewport: MOBILE,
      locale: 'fr-FR',
      acceptDownloads: true,
    });
    try {
      const { page } = journey;
      const first = await withAuthenticator(journey);
      await logInAsMarie(journey, server.base);

      // The security page explains, then the passkey and the recovery code.
      await page.getByRole('link', { name: LOCK }).click();
      await page.waitForURL(`${server.base}/vault/security`);
      assert.equal(await journey.heading().innerText(), 'Sécurité de mon coffre');
      const lock = page.getByRole('button', { name: LOCK });
      await lock.waitFor();
      await journey.check('security-open');
      await page.getByLabel("Nom de la clé d'accès (facultatif)").fill('Ordinateur de Marie');
      await lock.click();

      const shown = page.locator('#recovery-code-shown');
      await shown.waitFor();
      const code = (await shown.innerText()).replace(/\s/g, '');
      assert.match(code, /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){6}$/, 'seven groups of four');
      await journey.check('recovery-code');
      const challenge = page.getByLabel(/^Recopiez le groupe n° \d$/);
      const group = Number((await page.locator('#challenge-label').innerText()).match(/\d/)[0]);
      const confirm = page.getByRole('button', { name: 'Confirmer et verrouiller mon coffre' });
      const wrongGroup = code.split('-')[group % 7];
      await challenge.fill(wrongGroup === code.split('-')[group - 1] ? 'ZZZZ' : wrongGroup);
      await confirm.click();
      await alert(page, "Ce n'est pas le groupe demandé").waitFor();
      assert.equal(await challenge.getAttribute('aria-invalid'), 'true');
      // Typed back in lower case: the code is read as forgivingly as when it is used.
      await challenge.fill(code.split('-')[group - 1].toLowerCase());
      await confirm.click();

      // Locked: the page now lists the passkey.
      await page.getByRole('heading', { name: "Mes clés d'accès", exact: true }).waitFor({ timeout: 30_000 });
      await page.getByRole('heading', { name: 'Ordinateur de Marie' }).waitFor();
      assert.equal(await page.getByRole('button', { name: 'Retirer' }).count(), 0, 'the only passkey stays');
      await journey.check('security-locked');
      recoveryCode = code;

      // A new login: the list comes sealed, and opens in the page with the passkey.
      await logOut(journey);
      await logInAsMarie(journey, server.base);
      assert.equal(await page.getByRole('link', { name: TITLE }).count(), 0);
      assert.equal(await page.getByRole('heading', { name: LOCKED_PLACEHOLDER }).count(), 1);
      assert.equal(await page.getByText(TITLE).count(), 0, 'the server sent no title');
      await journey.check('vault-locked');
      const unlockFinish = page.waitForRequest((request) => request.url().endsWith('/vault/unlock/finish'));
      await page.getByRole('button', { name: OPEN_WITH_PASSKEY }).click();
      await page.getByRole('heading', { name: TITLE }).waitFor();
      await page.getByText(FILE_NAME).waitFor();
      await page.getByRole('status').filter({ hasText: 'Votre coffre est ouvert sur cette page.' }).waitFor();
      await journey.check('vault-opened');

      // The passkey's answer, sent again by someone who captured it, opens nothing:
      // its ceremony served once, and a new ceremony has another challenge.
      const captured = JSON.parse((await unlockFinish).postData());
      const cookie = (await page.context().cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
      const csrf = await page.locator('input[name="csrf"]').first().inputValue();
      const call = (path, body) =>
        fetch(`${server.direct}${path}`, {
          method: 'POST',
          headers: { cookie, 'content-type': 'application/json', 'x-csrf-token': csrf },
          body: JSON.stringify(body),
        });
      const replayed = await call('/vault/unlock/finish', captured);
      assert.equal(replayed.status, 410);
      assert.equal((await replayed.json()).error, 'ceremony_expired');
      const fresh = await (await call('/vault/unlock/start', {})).json();
      const elsewhere = await call('/vault/unlock/finish', { ...captured, ceremony: fresh.ceremony });
      assert.equal(elsewhere.status, 400);
      assert.equal((await elsewhere.json()).error, 'invalid_assertion');

      const download = page.getByRole('button', { name: 'Télécharger' });
      const [saved] = await Promise.all([page.waitForEvent('download'), download.click()]);
      assert.equal(saved.suggestedFilename(), FILE_NAME);
      assert.equal(await saved.failure(), null);
      assert.deepEqual(readFileSync(await saved.path()), DOCUMENT);

      // A second passkey, on another authenticator: the vault is opened first with the
      // one it has, then the new one is registered.
      await page.getByRole('link', { name: "Mes clés d'accès et mon code de secours" }).click();
      await page.waitForURL(`${server.base}/vault/security`);
      await page.getByRole('button', { name: OPEN_WITH_PASSKEY }).click();
      const add = page.getByRole('button', { name: "Enregistrer une nouvelle clé d'accès" });
      await add.waitFor();
      await journey.check('security-add');
      // The first authenticator stops answering, as when a phone is used instead.
      await journey.cdp.send('WebAuthn.setAutomaticPresenceSimulation', {
        authenticatorId: first,
        enabled: false,
      });
      await withAuthenticator(journey, { transport: 'usb' });
      await page.getByLabel("Nom de la clé d'accès (facultatif)").fill('Clé USB');
      await add.click();
      await page.getByRole('heading', { name: 'Clé USB' }).waitFor({ timeout: 30_000 });
      assert.equal(await page.getByRole('button', { name: 'Retirer' }).count(), 2);
      await journey.check('security-two-passkeys');

      // Removing one leaves the other, which can no longer be removed.
      await page
        .getByRole('listitem')
        .filter({ has: page.getByRole('heading', { name: 'Clé USB' }) })
        .getByRole('button', { name: 'Retirer' })
        .click();
      await page.waitForURL(`${server.base}/vault/security`);
      await page.getByRole('heading', { name: 'Ordinateur de Marie' }).waitFor();
      assert.equal(await page.getByRole('heading', { name: 'Clé USB' }).count(), 0);
      assert.equal(await page.getByRole('button', { name: 'Retirer' }).count(), 0);

      journey.assertClean();
    } finally {
      await journey.close();
    }
  });

  test('the recovery code opens the vault in a browser without passkeys', { timeout: 120_000 }, async (t) => {
    if (!recoveryCode) {
      t.skip('the vault was not locked');
      return;
    }
    const journey = await Journey.open(browser, 'recovery', {
      viewport: DESKTOP,
      locale: 'fr-FR',
      acceptDownloads: true,
    });
    try {
      const { page } = journey;
      await logInAsMarie(journey, server.base);
      assert.equal(await page.getByRole('heading', { name: LOCKED_PLACEHOLDER }).count(), 1);
      await page.getByRole('button', { name: 'Utiliser mon code de secours' }).click();
      const field = page.getByLabel('Code de secours', { exact: true });
      const open = page.getByRole('button', { name: 'Ouvrir mon coffre', exact: true });

      // Not a code at all: told at once, no attempt spent.
      await field.fill('1234');
      await open.click();
      await alert(page, "Ce n'est pas un code de secours").waitFor();

      // A well-formed code that is not this vault's.
      const wrong = recoveryCode.startsWith('0000') ? 'Z' + recoveryCode.slice(1) : '0000' + recoveryCode.slice(4);
      await field.fill(wrong);
      await open.click();
      await alert(page, "Ce code de secours n'ouvre pas votre coffre").waitFor({ timeout: 30_000 });
      assert.equal(await field.getAttribute('aria-invalid'), 'true');
      await journey.check('vault-wrong-code');

      // The right one, typed with spaces and in lower case.
      await field.fill(recoveryCode.toLowerCase().replace(/-/g, ' '));
      await open.click();
      await page.getByRole('heading', { name: TITLE }).waitFor({ timeout: 30_000 });
      await page.getByRole('button', { name: 'Enregistrer une clé d\'accès sur cet appareil' }).waitFor();
      await journey.check('vault-recovered');

      const [saved] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Télécharger' }).click(),
      ]);
      assert.deepEqual(readFileSync(await saved.path()), DOCUMENT);

      // The payload altered in storage: refused, and nothing is saved.
      const payload = storedPayload(server.dataDir);
      assert.ok(payload, 'the stored payload is found');
      const altered = readFileSync(payload);
      altered[100] ^= 1;
      writeFileSync(payload, altered);
      let downloads = 0;
      page.on('download', () => {
        downloads += 1;
      });
      await page.getByRole('button', { name: 'Télécharger' }).click();
      await alert(page, 'modifié ou abîmé').waitFor();
      assert.equal(downloads, 0, 'an altered document is not saved');

      // Declining the offer drops the vault key's text; the list stays open.
      await page.getByRole('button', { name: 'Pas maintenant' }).click();
      assert.equal(await page.getByRole('heading', { name: TITLE }).count(), 1);

      // Each try fetches the recovery copy, and the server allows five a day: two were
      // spent above, and the sixth is refused with its own message.
      await page.goto(`${server.base}/vault`);
      await page.getByRole('button', { name: 'Utiliser mon code de secours' }).click();
      journey.expectedStatus = { url: `${server.base}/vault/recovery`, status: 429 };
      const tooMany = alert(page, "Trop d'essais du code de secours");
      for (let attempt = 3; attempt <= 6; attempt += 1) {
        await field.fill(wrong);
        await open.click();
        await page
          .getByRole('alert')
          .filter({ hasText: /n'ouvre pas votre coffre|Trop d'essais/ })
          .waitFor({ timeout: 30_000 });
        // The click itself clears the previous answer, so each wait sees a new one.
        if (await tooMany.count()) break;
      }
      await tooMany.waitFor();
      journey.expectedStatus = null;
      await journey.check('vault-too-many-attempts');
      journey.assertClean();
    } finally {
      await journey.close();
    }
  });
});

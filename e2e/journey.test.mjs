// A citizen's whole journey in a real browser (Debian's Chromium driven by Playwright)
// against the real server binary: home page, FranceConnect-style login through the
// demonstration provider, vault, download, notification settings, logout, expired
// session. Every page is checked with axe-core (WCAG 2.1 A and AA), for console errors
// and for Content-Security-Policy violations, at 320 px wide and on a desktop.
//
// The server, the browser and the page checks are in support.mjs.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { DESKTOP, Journey, MOBILE, Server, launchBrowser } from './support.mjs';

const AGENT_EMAIL = 'agent@mairie.example';
const TITLE = 'Avis de taxe foncière 2026';
const FILE_NAME = 'avis-taxe-fonciere-2026.pdf';
// Small and PDF-looking, with a non-ASCII byte so the download is compared exactly.
const DOCUMENT = Buffer.from(
  '%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n',
  'latin1',
);

/** The server under test and the browser, shared by both passes. */
let server;
let browser;

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
    category: 'impots',
  };
  const form = new FormData();
  form.append('metadata', new Blob([JSON.stringify(metadata)], { type: 'application/json' }));
  form.append('file', new Blob([DOCUMENT], { type: 'application/pdf' }), FILE_NAME);
  const response = await fetch(`${server.base}/api/v1/documents`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Idempotency-Key': 'e2e-taxe-2026' },
    body: form,
  });
  const body = await response.text();
  assert.equal(response.status, 201, `delivery refused: ${body}`);
  assert.equal(JSON.parse(body).state, 'stored', body);
}

async function citizenJourney(pass, viewport) {
  const journey = await Journey.open(browser, pass, {
    viewport,
    locale: 'fr-FR',
    acceptDownloads: true,
  });
  try {
    const page = journey.page;

    // Home page: the FranceConnect-style button comes first among the login options.
    await page.goto(`${server.base}/`);
    assert.equal(await page.locator('html').getAttribute('lang'), 'fr');
    await journey.check('home');
    const login = page.locator('section.login');
    const firstOption = login.getByRole('link').first();
    assert.match((await firstOption.getAttribute('class')) || '', /\bfr-connect\b/);
    assert.match(await firstOption.innerText(), /S'identifier avec\s+FranceConnect/);
    const explainer = login.getByRole('link', { name: "Qu'est-ce que FranceConnect ?" });
    assert.equal(await explainer.count(), 1);
    assert.equal(await explainer.getAttribute('href'), 'https://franceconnect.gouv.fr/');

    // The demonstration provider's page.
    await firstOption.click();
    await page.waitForURL(/\/demo-idp\//);
    assert.equal(await journey.heading().innerText(), 'Connexion de démonstration');
    await journey.check('provider');
    await page.getByLabel(/^Marie Claire DUPONT/).check();
    await page.getByRole('button', { name: 'Se connecter' }).click();

    // The vault lists the document delivered before her first login.
    await page.waitForURL(`${server.base}/vault`);
    assert.equal(await journey.heading().innerText(), 'Mes documents');
    const document = page.getByRole('link', { name: TITLE });
    assert.equal(await document.count(), 1);
    await journey.check('vault');

    const [download] = await Promise.all([page.waitForEvent('download'), document.click()]);
    assert.equal(download.suggestedFilename(), FILE_NAME);
    assert.equal(await download.failure(), null);
    assert.deepEqual(readFileSync(await download.path()), DOCUMENT);

    // Notification settings.
    await page.getByRole('link', { name: 'Mes notifications' }).click();
    await page.waitForURL(`${server.base}/vault/settings`);
    assert.equal(await journey.heading().innerText(), 'Mes notifications');
    await journey.check('settings');
    await page.getByLabel('Adresse électronique').fill('marie.dupont@example.org');
    await page.getByLabel('courriel', { exact: true }).check();
    await page.getByRole('button', { name: 'Enregistrer' }).click();
    await page.getByRole('status').filter({ hasText: 'Vos préférences sont enregistrées.' }).waitFor();
    assert.equal(await page.getByLabel('Adresse électronique').inputValue(), 'marie.dupont@example.org');
    await journey.check('settings-saved');

    // Logging out goes through the provider and ends on the portal's page.
    await page.getByRole('banner').getByRole('button', { name: 'Se déconnecter' }).click();
    await page.waitForURL((url) => url.pathname.startsWith('/logout'));
    await journey.heading().filter({ hasText: 'Vous êtes déconnecté' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Se déconnecter' }).count(), 0);
    await journey.check('logged-out');

    // The vault is closed now.
    journey.expectedStatus = { url: `${server.base}/vault`, status: 401 };
    const closed = await page.goto(`${server.base}/vault`);
    assert.equal(closed.status(), 401, 'the vault after logout');
    assert.equal(await journey.heading().innerText(), 'Session expirée');
    assert.equal(await page.getByRole('link', { name: TITLE }).count(), 0);
    await journey.check('expired');

    journey.assertClean();
  } finally {
    await journey.close();
  }
}

describe('citizen journey in a browser', { timeout: 120_000 }, () => {
  before(async () => {
    server = await Server.start();
    server.run(['agent', 'create', '--email', AGENT_EMAIL, '--role', 'agent']);
    const token = server.run(['agent', 'token', '--email', AGENT_EMAIL]).trim();
    assert.match(token, /^\S+$/, 'agent token prints one line');
    await deliverDocument(token);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('at 320 px wide', { timeout: 60_000 }, async () => {
    await citizenJourney('mobile', MOBILE);
  });

  test('on a desktop', { timeout: 60_000 }, async () => {
    await citizenJourney('desktop', DESKTOP);
  });
});

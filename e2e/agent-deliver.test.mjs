// A document delivered end to end from the agent's delivery form: the page asks for
// the vault's key, encrypts the file and seals its title before sending, so neither
// leaves the agent's browser in clear; the status pages say it was encrypted end to
// end; Marie Dupont then downloads the very bytes the agent chose. Without scripts the
// same form still delivers, encrypted on arrival. Every page goes through the checks of
// support.mjs.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';

import {
  DESKTOP,
  Journey,
  Server,
  firstAgentLogin,
  launchBrowser,
  logInAsMarie,
  setPassword,
} from './support.mjs';

const DEPARTMENT = { slug: 'etat-civil', name: 'État civil' };
const TITLE = 'Acte de naissance — copie intégrale';
const FILE_NAME = 'acte-naissance-dupont.pdf';
const MARKER = 'MARQUEUR-EN-CLAIR-7f3a9c';
// Larger than one 64 KiB age chunk, with non-ASCII bytes and a marker in clear that
// must not be found in what the browser sends.
const DOCUMENT = Buffer.concat([
  Buffer.from(`%PDF-1.4\n%\xe2\xe3\xcf\xd3\n% ${MARKER}\n`, 'latin1'),
  Buffer.alloc(70 * 1024, 'é'),
  Buffer.from(`\n% ${MARKER}\ntrailer << >>\n%%EOF\n`, 'latin1'),
]);

let server;
let browser;
let proxy;

/**
 * A forward proxy for the browser's loopback requests that keeps each delivery's
 * body as it went on the wire (DevTools does not show the bodies of file uploads).
 */
function recordingProxy() {
  const bodies = [];
  const proxyServer = createServer((incoming, answer) => {
    const target = new URL(incoming.url);
    const chunks = [];
    const outgoing = httpRequest(
      target,
      { method: incoming.method, headers: incoming.headers },
      (response) => {
        answer.writeHead(response.statusCode, response.headers);
        response.pipe(answer);
      },
    );
    outgoing.on('error', () => answer.destroy());
    incoming.on('data', (chunk) => {
      chunks.push(chunk);
      outgoing.write(chunk);
    });
    incoming.on('end', () => {
      if (incoming.method === 'POST' && target.pathname === '/agent/deliveries/new') {
        bodies.push(Buffer.concat(chunks));
      }
      outgoing.end();
    });
  });
  return new Promise((resolve) => {
    proxyServer.listen(0, '127.0.0.1', () => resolve({ server: proxyServer, bodies }));
  });
}

describe('delivery encrypted in the agent page', { timeout: 90_000 }, () => {
  before(async () => {
    server = await Server.start();
    server.run(['department', 'create', '--slug', DEPARTMENT.slug, '--name', DEPARTMENT.name]);
    proxy = await recordingProxy();
    browser = await launchBrowser([
      `--proxy-server=http://127.0.0.1:${proxy.server.address().port}`,
      // Chromium sends loopback requests around any proxy unless told otherwise.
      '--proxy-bypass-list=<-loopback>',
    ]);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    proxy?.server.close();
  });

  test('neither the file nor its title leave the page in clear', async () => {
    const email = 'agent-e2e@mairie.example';
    server.run(['agent', 'create', '--email', email, '--role', 'admin']);
    setPassword(server, email);
    const base = server.base;

    const agent = await Journey.open(browser, 'deliver-e2e', { viewport: DESKTOP, locale: 'fr-FR' });
    try {
      const { page } = agent;
      await firstAgentLogin(agent, base, email);
      await page.goto(`${base}/agent/deliveries/new`);
      await page.locator('#deliver-intro-in-page').waitFor();
      await agent.check('deliver');

      await page.locator('#kind-pivot').check();
      await page.locator('#family_name').fill('Dupont');
      await page.locator('#given_names').fill('Marie Claire');
      await page.locator('#birthdate').fill('1980-07-30');
      await page.locator('#birthplace').fill('75056');
      await page.locator('#title').fill(TITLE);
      await page.locator('#category').fill('etat-civil');
      await page.locator('#department').selectOption(DEPARTMENT.slug);
      await page.locator('#file').setInputFiles({
        name: FILE_NAME,
        mimeType: 'application/pdf',
        buffer: DOCUMENT,
      });

      await page.getByRole('button', { name: 'Chiffrer et déposer' }).click();
      await page.waitForURL(/\/agent\/deliveries\/(?!new$)[^/]+$/);
      const documentId = page.url().split('/').pop();
      assert.notEqual(documentId, 'new');

      // (a) What the browser sent: the age file and the sealed title, nothing in clear.
      const sent = proxy.bodies;
      assert.equal(sent.length, 1, 'one delivery sent');
      const body = sent[0];
      const text = body.toString('latin1');
      assert.match(text, /name="encryption_recipient"\r\n\r\nage1[0-9a-z]{58}\r\n/);
      assert.match(text, /name="sealed_metadata"\r\n\r\n[A-Za-z0-9_-]{100,}\r\n/);
      assert.match(text, /age-encryption\.org\/v1\n-> X25519 /, 'the file is an age file');
      assert.ok(body.length > DOCUMENT.length, 'the whole encrypted file was sent');
      assert.equal(body.indexOf(MARKER), -1, 'the file does not travel in clear');
      assert.equal(body.indexOf(Buffer.from(TITLE, 'utf8')), -1, 'nor does its title');
      assert.equal(body.indexOf(FILE_NAME), -1, 'nor does its file name');
      assert.doesNotMatch(text, /name="title"/, 'no title field beside the sealed one');

      // (b) The status page and the list say it was encrypted end to end.
      assert.equal(
        await page.locator('.delivery .tag').innerText(),
        'Chiffré de bout en bout',
      );
      await agent.check('delivery');
      await page.goto(`${base}/agent/deliveries`);
      const row = page.getByRole('row').filter({
        has: page.locator(`a[href="/agent/deliveries/${documentId}"]`),
      });
      assert.match(await row.innerText(), /Chiffré de bout en bout/);
      await agent.check('deliveries');
      agent.assertClean();
    } finally {
      await agent.close();
    }

    // (c) Marie downloads the original bytes, with its title and file name unsealed.
    const citizen = await Journey.open(browser, 'deliver-e2e-citizen', {
      viewport: DESKTOP,
      locale: 'fr-FR',
      acceptDownloads: true,
    });
    try {
      const { page } = citizen;
      await logInAsMarie(citizen, base);
      const document = page.getByRole('link', { name: TITLE });
      assert.equal(await document.count(), 1);
      await citizen.check('vault');
      const [download] = await Promise.all([page.waitForEvent('download'), document.click()]);
      assert.equal(download.suggestedFilename(), FILE_NAME);
      assert.equal(await download.failure(), null);
      assert.deepEqual(readFileSync(await download.path()), DOCUMENT);
      citizen.assertClean();
    } finally {
      await citizen.close();
    }
  });

  test('without scripts the form is sent as it is and encrypted on arrival', async () => {
    const email = 'agent-sans-js@mairie.example';
    server.run(['agent', 'create', '--email', email, '--role', 'admin']);
    setPassword(server, email);
    const base = server.base;
    const agent = await Journey.open(browser, 'deliver-no-script', {
      viewport: DESKTOP,
      locale: 'fr-FR',
      javaScriptEnabled: false,
    });
    try {
      const { page } = agent;
      await firstAgentLogin(agent, base, email);
      await page.goto(`${base}/agent/deliveries/new`);
      assert.ok(await page.locator('#deliver-intro').isVisible(), 'the page says the server encrypts');
      await page.locator('#family_name').fill('Dupont');
      await page.locator('#given_names').fill('Marie Claire');
      await page.locator('#birthdate').fill('1980-07-30');
      await page.locator('#birthplace').fill('75056');
      await page.locator('#title').fill(`${TITLE} (sans script)`);
      await page.locator('#category').fill('etat-civil');
      await page.locator('#department').selectOption(DEPARTMENT.slug);
      await page.locator('#file').setInputFiles({
        name: FILE_NAME,
        mimeType: 'application/pdf',
        buffer: DOCUMENT,
      });
      const before = proxy.bodies.length;
      await page.getByRole('button', { name: 'Chiffrer et déposer' }).click();
      await page.waitForURL(/\/agent\/deliveries\/(?!new$)[^/]+$/);
      const body = proxy.bodies[before];
      assert.notEqual(body.indexOf(MARKER), -1, 'the file went as it is');
      assert.equal(await page.locator('.delivery .tag').innerText(), "Chiffré à l'arrivée");
      // No axe here: it needs scripts; the same page was checked with them.
      agent.assertClean();
    } finally {
      await agent.close();
    }
  });
});

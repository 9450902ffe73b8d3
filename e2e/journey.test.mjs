// A citizen's whole journey in a real browser (Debian's Chromium driven by Playwright)
// against the real server binary: home page, FranceConnect-style login through the
// demonstration provider, vault, download, notification settings, logout, expired
// session. Every page is checked with axe-core (WCAG 2.1 A and AA), for console errors
// and for Content-Security-Policy violations, at 320 px wide and on a desktop.
//
// EGUICHET_BIN names the server binary (CI builds into a shared target directory).
// E2E_SCREENSHOTS, when set, names a directory that receives a screenshot of each page.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const AXE_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const BLOCKING_IMPACTS = new Set(['serious', 'critical']);

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

const AGENT_EMAIL = 'agent@mairie.example';
const TITLE = 'Avis de taxe foncière 2026';
const FILE_NAME = 'avis-taxe-fonciere-2026.pdf';
// Small and PDF-looking, with a non-ASCII byte so the download is compared exactly.
const DOCUMENT = Buffer.from(
  '%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n',
  'latin1',
);
const SCREENSHOTS = process.env.E2E_SCREENSHOTS || '';

/** The server under test, started once for every pass. */
const server = { process: null, base: '', dataDir: '', env: {}, log: [] };
let browser;

function serverBinary() {
  const bin = process.env.EGUICHET_BIN;
  if (!bin) {
    throw new Error(
      'EGUICHET_BIN is not set: point it at the built server, e.g. ' +
        'EGUICHET_BIN="$CARGO_TARGET_DIR/debug/eguichet" node --test e2e/',
    );
  }
  if (!existsSync(bin)) {
    throw new Error(`EGUICHET_BIN=${bin} does not exist: run \`cargo build\` first`);
  }
  return bin;
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function startServer() {
  const bin = serverBinary();
  server.dataDir = mkdtempSync(join(tmpdir(), 'eguichet-e2e-'));
  const port = await freePort();
  server.base = `http://127.0.0.1:${port}`;
  // Every EGUICHET_* variable is configuration to the server, which refuses unknown
  // keys (EGUICHET_BIN among them): the instance gets only its own.
  const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('EGUICHET_'));
  server.env = {
    ...Object.fromEntries(inherited),
    EGUICHET_DATA_DIR: server.dataDir,
    EGUICHET_LISTEN: `127.0.0.1:${port}`,
    RUST_LOG: process.env.RUST_LOG || 'warn',
  };
  server.process = spawn(bin, [], { env: server.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let exited = null;
  server.process.once('exit', (code, signal) => {
    exited = `exited (code ${code}, signal ${signal})`;
  });
  for (const stream of [server.process.stdout, server.process.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => server.log.push(chunk));
  }
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`the server ${exited}:\n${server.log.join('')}`);
    try {
      const response = await fetch(`${server.base}/healthz`);
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      throw new Error(`no answer on ${server.base}/healthz after 30 s:\n${server.log.join('')}`);
    }
    await sleep(100);
  }
}

async function stopServer() {
  const child = server.process;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  // An unreferenced timer: the runner must not wait for it once the server is gone.
  const patience = sleep(5_000, false, { ref: false });
  const stopped = await Promise.race([gone.then(() => true), patience]);
  if (!stopped) {
    child.kill('SIGKILL');
    await gone;
  }
}

/** Runs a command of the server binary on the same data directory; returns its stdout. */
function eguichet(...args) {
  return execFileSync(serverBinary(), args, {
    env: server.env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

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

/** One browser tab with the checks every page of the journey goes through. */
class Journey {
  constructor(page, pass) {
    this.page = page;
    this.pass = pass;
    this.consoleErrors = [];
    this.violations = [];
    this.step = 0;
    // Chromium logs an error status of the page itself; one the test asked for is fine.
    this.expectedStatus = null;
    page.on('console', (message) => {
      const text = message.text();
      const source = message.location().url;
      const expected = this.expectedStatus;
      if (
        expected &&
        source === expected.url &&
        text.includes(`status of ${expected.status} `)
      ) {
        return;
      }
      if (message.type() === 'error' || /Content.Security.Policy/i.test(text)) {
        this.consoleErrors.push(`${page.url()}: [${message.type()}] ${text} (${source})`);
      }
    });
    page.on('pageerror', (error) => this.consoleErrors.push(`${page.url()}: ${error.message}`));
  }

  /** Records CSP violations the page itself sees (the init script bypasses the CSP). */
  async watchPolicyViolations() {
    await this.page.exposeBinding('__reportPolicyViolation', ({ frame }, report) => {
      this.consoleErrors.push(`${frame.url()}: CSP violation ${report}`);
    });
    await this.page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (event) => {
        window.__reportPolicyViolation(
          `${event.violatedDirective} blocked ${event.blockedURI || '(inline)'}`,
        );
      });
    });
  }

  /** Accessibility, layout at the current width, and a screenshot when asked. */
  async check(name) {
    const page = this.page;
    await page.waitForLoadState('load');
    await page.evaluate(AXE_SOURCE);
    const results = await page.evaluate(
      (tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags } }),
      AXE_TAGS,
    );
    assert.ok(results.passes.length > 0, `${name}: axe-core checked nothing`);
    console.log(
      `axe ${this.pass}/${name}: ${results.passes.length} rules passed, ` +
        `${results.violations.length} violated`,
    );
    for (const violation of results.violations) {
      if (!BLOCKING_IMPACTS.has(violation.impact)) {
        console.log(`axe ${this.pass}/${name}: ${violation.impact} ${violation.id} (not blocking)`);
        continue;
      }
      this.violations.push(
        `${name} (${page.url()}): ${violation.impact} ${violation.id} — ${violation.help}\n` +
          violation.nodes
            .map((node) => `    ${node.target.join(' ')}: ${node.failureSummary.replace(/\n/g, ' ')}`)
            .join('\n'),
      );
    }
    const { scrollWidth, innerWidth } = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
    }));
    assert.ok(
      scrollWidth <= innerWidth,
      `${name}: the page is ${scrollWidth} px wide in a ${innerWidth} px window`,
    );
    if (SCREENSHOTS) {
      this.step += 1;
      mkdirSync(SCREENSHOTS, { recursive: true });
      const file = `${this.pass}-${String(this.step).padStart(2, '0')}-${name}.png`;
      await page.screenshot({ path: join(SCREENSHOTS, file), fullPage: true });
    }
  }

  heading() {
    return this.page.getByRole('heading', { level: 1 });
  }

  assertClean() {
    assert.deepEqual(
      this.violations,
      [],
      `serious or critical accessibility violations:\n${this.violations.join('\n')}`,
    );
    assert.deepEqual(this.consoleErrors, [], 'console errors or CSP violations');
  }
}

async function citizenJourney(pass, viewport) {
  const context = await browser.newContext({
    viewport,
    locale: 'fr-FR',
    acceptDownloads: true,
  });
  try {
    const page = await context.newPage();
    const journey = new Journey(page, pass);
    await journey.watchPolicyViolations();

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
    await context.close();
  }
}

describe('citizen journey in a browser', { timeout: 120_000 }, () => {
  before(async () => {
    await startServer();
    eguichet('agent', 'create', '--email', AGENT_EMAIL, '--role', 'agent');
    const token = eguichet('agent', 'token', '--email', AGENT_EMAIL).trim();
    assert.match(token, /^\S+$/, 'agent token prints one line');
    await deliverDocument(token);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    await browser?.close();
    await stopServer();
    if (server.dataDir) rmSync(server.dataDir, { recursive: true, force: true });
  });

  test('at 320 px wide', { timeout: 60_000 }, async () => {
    await citizenJourney('mobile', { width: 320, height: 640 });
  });

  test('on a desktop', { timeout: 60_000 }, async () => {
    await citizenJourney('desktop', { width: 1280, height: 800 });
  });
});

// A test runner interrupted mid-way must not leave the server behind.
process.once('exit', () => {
  if (server.process && server.process.exitCode === null) server.process.kill('SIGKILL');
});

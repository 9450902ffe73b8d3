// What every browser journey shares: the real server binary started on a temporary
// data directory, its command line on the same directory, Debian's Chromium, and the
// checks each page goes through (axe-core WCAG 2.1 A and AA, console errors and
// Content-Security-Policy violations, no horizontal overflow at the current width).
//
// EGUICHET_BIN names the server binary (CI builds into a shared target directory).
// E2E_SCREENSHOTS, when set, names a directory that receives a screenshot of each page.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
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

const SCREENSHOTS = process.env.E2E_SCREENSHOTS || '';

/** The password of every agent a journey creates. */
export const PASSWORD = 'correct horse battery staple';

/** The two widths every journey runs at. */
export const MOBILE = { width: 320, height: 640 };
export const DESKTOP = { width: 1280, height: 800 };

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

/** The server under test on its own data directory, with its command line beside it. */
export class Server {
  constructor() {
    this.process = null;
    this.base = '';
    this.direct = '';
    this.dataDir = '';
    this.env = {};
    this.log = [];
  }

  /**
   * Starts the binary on a free loopback port and waits for /healthz. With
   * `localhost`, the browser's address is http://localhost:PORT and the server's
   * public_url says so: passkeys (WebAuthn) refuse an IP address as their origin.
   */
  static async start({ localhost = false } = {}) {
    const server = new Server();
    // A test runner interrupted mid-way must not leave the server behind.
    process.once('exit', () => {
      if (server.process && server.process.exitCode === null) server.process.kill('SIGKILL');
    });
    await server.#spawn(localhost);
    return server;
  }

  async #spawn(localhost) {
    const bin = serverBinary();
    this.dataDir = mkdtempSync(join(tmpdir(), 'eguichet-e2e-'));
    const port = await freePort();
    // `direct` is for the test's own requests: Node may try ::1 first for localhost.
    this.direct = `http://127.0.0.1:${port}`;
    this.base = localhost ? `http://localhost:${port}` : this.direct;
    // Every EGUICHET_* variable is configuration to the server, which refuses unknown
    // keys (EGUICHET_BIN among them): the instance gets only its own.
    const inherited = Object.entries(process.env).filter(([name]) => !name.startsWith('EGUICHET_'));
    this.env = {
      ...Object.fromEntries(inherited),
      EGUICHET_DATA_DIR: this.dataDir,
      EGUICHET_LISTEN: `127.0.0.1:${port}`,
      ...(localhost ? { EGUICHET_PUBLIC_URL: this.base } : {}),
      RUST_LOG: process.env.RUST_LOG || 'warn',
    };
    this.process = spawn(bin, [], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let exited = null;
    this.process.once('exit', (code, signal) => {
      exited = `exited (code ${code}, signal ${signal})`;
    });
    for (const stream of [this.process.stdout, this.process.stderr]) {
      stream.setEncoding('utf8');
      stream.on('data', (chunk) => this.log.push(chunk));
    }
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) throw new Error(`the server ${exited}:\n${this.log.join('')}`);
      try {
        const response = await fetch(`${this.direct}/healthz`);
        if (response.ok) return;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > deadline) {
        throw new Error(`no answer on ${this.base}/healthz after 30 s:\n${this.log.join('')}`);
      }
      await sleep(100);
    }
  }

  /**
   * Runs a command of the server binary on the same data directory; returns its stdout.
   * `input`, when given, is written to its standard input (passwords go there).
   */
  run(args, { input } = {}) {
    return execFileSync(serverBinary(), args, {
      env: this.env,
      encoding: 'utf8',
      input,
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
  }

  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its data. */
  async stop() {
    const child = this.process;
    if (child && child.exitCode === null && child.signalCode === null) {
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
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Debian's Chromium, headless; `args` are added to its command line. */
export function launchBrowser(args = []) {
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...args] });
}

/** One browser tab with the checks every page of a journey goes through. */
export class Journey {
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

  /** Opens a tab in a new context at the given viewport, watching CSP violations. */
  static async open(browser, pass, contextOptions) {
    const context = await browser.newContext(contextOptions);
    const journey = new Journey(await context.newPage(), pass);
    journey.context = context;
    await journey.watchPolicyViolations();
    return journey;
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
    const { scrollWidth, innerWidth, wide } = await page.evaluate(() => {
      const innerWidth = window.innerWidth;
      // The outermost elements past the right edge, to name the culprit.
      const wide = [...document.body.querySelectorAll('*')]
        .filter((element) => element.getBoundingClientRect().right > innerWidth + 0.5)
        .filter((element) => !element.parentElement.closest('.table-scroll'))
        .slice(0, 5)
        .map((element) => {
          const classes = [...element.classList].map((name) => `.${name}`).join('');
          const id = element.id ? `#${element.id}` : '';
          return `${element.tagName.toLowerCase()}${id}${classes} (${Math.round(element.getBoundingClientRect().right)} px)`;
        });
      return { scrollWidth: document.documentElement.scrollWidth, innerWidth, wide };
    });
    assert.ok(
      scrollWidth <= innerWidth,
      `${name}: the page is ${scrollWidth} px wide in a ${innerWidth} px window: ${wide.join(', ')}`,
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

  async close() {
    await this.context?.close();
  }
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function base32Decode(text) {
  let bits = 0;
  let value = 0;
  const bytes = [];
  for (const char of text.replace(/[\s=]/g, '').toUpperCase()) {
    const index = BASE32.indexOf(char);
    if (index < 0) throw new Error(`not base32: ${char}`);
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(bytes);
}

/** The current RFC 6238 code (HMAC-SHA1, 30 s steps, 6 digits) of a base32 secret. */
export function totp(secret, now = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 30_000)));
  const mac = createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(code).padStart(6, '0');
}

/** Gives an existing agent account the journeys' password (on the command line). */
export function setPassword(server, email) {
  server.run(['agent', 'password', '--email', email], { input: `${PASSWORD}\n` });
}

/**
 * An agent's first login: email and password, the second factor enrolled with a TOTP
 * computed here, the recovery codes acknowledged; ends on the agent home page. With
 * `check`, each of those pages goes through the journey's checks.
 */
export async function firstAgentLogin(journey, base, email, { check = false } = {}) {
  const { page } = journey;
  const checkPage = check ? (name) => journey.check(name) : async () => {};
  await page.goto(`${base}/agent/login`);
  assert.equal(await journey.heading().innerText(), 'Connexion des agents');
  await checkPage('login');
  await page.locator('#email').fill(email);
  await page.locator('#password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Continuer' }).click();
  await page.waitForURL(`${base}/agent/login/enrol`);
  await checkPage('enrol');
  const secret = await page.locator('#secret').innerText();
  assert.match(secret, /^[A-Z2-7]{4}( [A-Z2-7]{1,4})+$/, 'the secret is grouped base32');
  await page.locator('#code').fill(totp(secret));
  await page.getByRole('button', { name: 'Activer et se connecter' }).click();

  // Recovery codes, shown once.
  await journey.heading().filter({ hasText: /codes/i }).waitFor();
  assert.ok((await page.locator('.recovery-codes code').count()) >= 5, 'recovery codes shown');
  await checkPage('recovery-codes');
  await page.getByRole('link', { name: "J'ai noté mes codes, continuer" }).click();
  await page.waitForURL(`${base}/agent`);
  assert.equal(await page.locator('#agent-email').innerText(), email);
}

/**
 * Gives a tab a virtual passkey authenticator (DevTools' WebAuthn domain: platform-like,
 * user verified, with the PRF extension unless `hasPrf` is false); returns its id.
 */
export async function withAuthenticator(journey, { hasPrf = true, transport = 'internal' } = {}) {
  journey.cdp ??= await journey.page.context().newCDPSession(journey.page);
  await journey.cdp.send('WebAuthn.enable');
  const { authenticatorId } = await journey.cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport,
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      hasPrf,
    },
  });
  return authenticatorId;
}

/** Logs the demonstration citizen Marie Dupont in through the demonstration provider; ends on /vault. */
export async function logInAsMarie(journey, base) {
  const { page } = journey;
  await page.goto(`${base}/`);
  await page.locator('section.login').getByRole('link').first().click();
  await page.waitForURL(/\/demo-idp\//);
  await page.getByLabel(/^Marie Claire DUPONT/).check();
  await page.getByRole('button', { name: 'Se connecter' }).click();
  await page.waitForURL(`${base}/vault`);
}

/** Submits a form (or follows a link) whose answer is an error status the test expects. */
export async function expectingStatus(journey, url, status, action, method = 'POST') {
  journey.expectedStatus = { url, status };
  const [response] = await Promise.all([
    journey.page.waitForResponse((r) => r.url() === url && r.request().method() === method),
    action(),
  ]);
  assert.equal(response.status(), status, `${url} answered ${response.status()}`);
  await journey.page.waitForLoadState('load');
  journey.expectedStatus = null;
}

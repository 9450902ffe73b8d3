// A voucher campaign in a real browser against the real server binary: an administrator
// creates a campaign, adds a distribution site, sends a households file that is refused,
// then imports households for the mail-merge file and for the printed letters (both
// downloads read back); at the site a code is typed and handed over, typed again (a
// warning: already handed over at this desk), and mistyped; a distributor account,
// created through the admin pages and logged in on another device, is told the voucher
// was already handed over at another desk of the site. Every page goes
// through the checks of support.mjs, at 320 px wide and on a desktop. A last test shows
// a letter's QR code to a fake camera and lets the scan page read it by itself.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { writeQrVideo } from './fake-camera.mjs';
import {
  DESKTOP,
  Journey,
  MOBILE,
  Server,
  expectingStatus,
  firstAgentLogin,
  launchBrowser,
  setPassword,
} from './support.mjs';

const ITEM = 'masques lavables';
const DEFAULT_ALLOTMENT = 2;
const MAIL_MERGE_HEADER = [
  'household_reference',
  'address_1',
  'address_2',
  'address_3',
  'address_4',
  'address_5',
  'address_6',
  'allotment',
  'code',
  'code_qr',
];

/** The server under test and the browser, shared by every test. */
let server;
let browser;

/** A day as the date fields take it, `days` from today. */
function day(days) {
  const date = new Date(Date.now() + days * 86_400_000);
  return date.toISOString().slice(0, 10);
}

/** Households of a pass, with the accents French addresses have. */
function households(pass) {
  const household = (number, allotment, ...address) => ({
    reference: `F-${pass}-${number}`,
    allotment,
    address,
  });
  return [
    household(
      '001',
      3,
      'Mme Françoise Lefèvre',
      'Résidence Les Érables, bâtiment B',
      "12 rue de l'Église",
      '59000 Lille',
    ),
    household('002', null, 'M. Jérôme Çelik', '3 allée des Pâquerettes', '59800 Lille'),
    household('003', null, 'Famille Noël-Bézier', '7 bis place du Marché', 'Hellemmes', '59260'),
    household('004', 1, 'Mlle Zoé Dumaître', '45 boulevard de la Liberté', '59000 Lille'),
  ];
}

/** The households file as a commune's spreadsheet exports it. */
function householdsCsv(rows) {
  const header = 'reference;allotment;address_1;address_2;address_3;address_4';
  const lines = rows.map((row) =>
    [row.reference, row.allotment ?? '', ...row.address, '', '', ''].slice(0, 6).join(';'),
  );
  return Buffer.from([header, ...lines, ''].join('\r\n'), 'utf8');
}

/** The mail-merge file's rows as objects (no field of these tests needs quoting). */
function parseMailMerge(bytes) {
  const bom = [...bytes.subarray(0, 3)];
  assert.deepEqual(bom, [0xef, 0xbb, 0xbf], 'the file starts with a UTF-8 BOM');
  const text = bytes.subarray(3).toString('utf8');
  assert.ok(!text.includes('"'), 'nothing is quoted');
  const [header, ...lines] = text.split('\r\n').filter((line) => line.length > 0);
  assert.deepEqual(header.split(';'), MAIL_MERGE_HEADER);
  return lines.map((line) => {
    const fields = line.split(';');
    assert.equal(fields.length, MAIL_MERGE_HEADER.length, `one field per column: ${line}`);
    return Object.fromEntries(MAIL_MERGE_HEADER.map((name, i) => [name, fields[i]]));
  });
}

/** Creates a campaign from the list page; ends on the campaign page, returns its id. */
async function createCampaign(page, name) {
  await page.locator('#name').fill(name);
  await page.locator('#item').fill(ITEM);
  await page.locator('#default_allotment').fill(String(DEFAULT_ALLOTMENT));
  await page.locator('#starts_on').fill(day(-7));
  await page.locator('#ends_on').fill(day(30));
  await page.getByRole('button', { name: 'Créer la campagne' }).click();
  await page.waitForURL(/\/agent\/vouchers\/[^/?]+$/);
  assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), name);
  return new URL(page.url()).pathname.split('/').pop();
}

async function addSite(page, site) {
  await page.locator('#site-name').fill(site.name);
  await page.locator('#site-address').fill(site.address);
  await page.locator('#site-hours').fill(site.hours);
  await page.getByRole('button', { name: 'Ajouter un lieu' }).click();
  await page.waitForURL(/\?done=site$/);
  const done = page.getByRole('status').filter({ hasText: 'Le lieu de distribution a été ajouté' });
  await done.waitFor();
}

/** Sends a households file asking for `format`; returns the downloaded answer. */
async function importHouseholds(page, file, format) {
  await page.locator(format === 'csv' ? '#format-csv' : '#format-pdf').check();
  await page.locator('#households').setInputFiles(file);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Émettre les codes' }).click(),
  ]);
  assert.equal(await download.failure(), null, 'the download completed');
  return { name: download.suggestedFilename(), bytes: await readFile(await download.path()) };
}

/** What the scan page answered: its kind (class), heading and detail. */
async function scanAnswer(page) {
  const answer = page.locator('#scan-answer .scan-answer');
  const kind = (await answer.getAttribute('class')).replace('scan-answer', '').trim();
  const heading = await answer.locator('.scan-heading').innerText();
  const details = answer.locator('.scan-detail');
  const detail = (await details.count()) > 0 ? await details.innerText() : null;
  return { kind, heading, detail };
}

/**
 * Types a code at the scan page, ticks "identity checked" and sends it; `status` is the
 * answer's expected HTTP status.
 */
async function scan(journey, code, { status = 200 } = {}) {
  const { page } = journey;
  const url = page.url();
  await page.locator('#code').fill(code);
  await page.locator('#identity_checked').check();
  if (status !== 200) journey.expectedStatus = { url, status };
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url() === url && r.request().method() === 'POST'),
    page.waitForEvent('framenavigated', (frame) => frame === page.mainFrame()),
    page.getByRole('button', { name: 'Valider le retrait' }).click(),
  ]);
  assert.equal(response.status(), status, `the scan answered ${response.status()}`);
  await page.waitForLoadState('load');
  journey.expectedStatus = null;
  return scanAnswer(page);
}

/** An administrator created on the command line and logged in, on a new device. */
async function loggedInAdmin(email, pass, contextOptions) {
  server.run(['agent', 'create', '--email', email, '--role', 'admin']);
  setPassword(server, email);
  const journey = await Journey.open(browser, pass, contextOptions);
  await firstAgentLogin(journey, server.base, email);
  return journey;
}

async function campaignJourney(pass, viewport) {
  const base = server.base;
  const contextOptions = { viewport, locale: 'fr-FR' };
  const admin = await loggedInAdmin(`admin-${pass}@mairie.example`, pass, contextOptions);
  let distributor = null;
  try {
    const { page } = admin;

    // The campaigns, reached from the agent home page; a new campaign.
    await page.getByRole('link', { name: 'Bons', exact: true }).first().click();
    await page.waitForURL(`${base}/agent/vouchers`);
    await admin.check('campaigns');
    const name = `Masques lavables — mai (${pass})`;
    const campaignId = await createCampaign(page, name);
    const campaignUrl = `${base}/agent/vouchers/${campaignId}`;
    assert.equal(await page.locator('#count-issued').innerText(), '0');
    await admin.check('campaign');

    // A distribution site.
    const site = {
      name: `Salle des fêtes (${pass})`,
      address: '1 place de la Mairie, 59000 Lille',
      hours: 'lundi–samedi 9 h–12 h',
    };
    await addSite(page, site);
    const siteItem = page.getByRole('listitem').filter({ hasText: site.name });
    assert.match(await siteItem.innerText(), /place de la Mairie/);
    await admin.check('campaign-site-added');

    // A households file with two wrong lines: refused whole, each line explained.
    const wrong = Buffer.from(
      [
        'reference;allotment;address_1',
        `F-${pass}-901;2;1 rue Gambetta, 59000 Lille`,
        `F-${pass}-902;beaucoup;2 rue Gambetta, 59000 Lille`,
        `F-${pass}-903;1;`,
        '',
      ].join('\n'),
      'utf8',
    );
    await page.locator('#format-csv').check();
    await page
      .locator('#households')
      .setInputFiles({ name: 'foyers-faux.csv', mimeType: 'text/csv', buffer: wrong });
    await expectingStatus(admin, `${campaignUrl}/households`, 422, () =>
      page.getByRole('button', { name: 'Émettre les codes' }).click(),
    );
    const refusal = page.getByRole('alert');
    assert.match(await refusal.innerText(), /Le fichier des foyers est refusé/);
    assert.equal(await refusal.getByRole('listitem').count(), 2, 'one reason per wrong line');
    assert.match(await refusal.getByRole('listitem').first().innerText(), /^Ligne 3 :/);
    assert.match(await refusal.innerText(), /Aucun code n'a été émis/);
    assert.equal(await page.locator('#count-issued').innerText(), '0');
    await admin.check('campaign-refused');

    // The mail-merge file for the postal operator: one line per household, its code.
    const rows = households(pass);
    const mailMerge = await importHouseholds(
      page,
      { name: `foyers-${pass}.csv`, mimeType: 'text/csv', buffer: householdsCsv(rows) },
      'csv',
    );
    assert.match(mailMerge.name, /^publipostage-.*\.csv$/);
    const issued = parseMailMerge(mailMerge.bytes);
    assert.equal(issued.length, rows.length);
    for (const [i, row] of rows.entries()) {
      const line = issued[i];
      assert.equal(line.household_reference, row.reference);
      assert.deepEqual(
        [1, 2, 3, 4, 5, 6].map((n) => line[`address_${n}`]).filter((text) => text !== ''),
        row.address,
        'the address comes back as sent, accents included',
      );
      assert.equal(line.allotment, String(row.allotment ?? DEFAULT_ALLOTMENT));
      assert.match(line.code_qr, /^[0-9A-HJKMNP-TV-Z]{24}$/);
      assert.equal(line.code, line.code_qr.match(/.{4}/g).join('-'));
    }
    assert.equal(new Set(issued.map((line) => line.code_qr)).size, rows.length, 'codes differ');

    // Printed letters for two more households.
    const more = [
      { reference: `F-${pass}-005`, allotment: null, address: ['M. Aurélien Giraud', 'Lille'] },
      { reference: `F-${pass}-006`, allotment: 2, address: ['Mme Hélène Dubœuf', '59000 Lille'] },
    ];
    const letters = await importHouseholds(
      page,
      { name: `foyers-suite-${pass}.csv`, mimeType: 'text/csv', buffer: householdsCsv(more) },
      'pdf',
    );
    assert.match(letters.name, /^courriers-.*\.pdf$/);
    assert.equal(letters.bytes.subarray(0, 5).toString('latin1'), '%PDF-');
    await page.goto(campaignUrl);
    const total = String(rows.length + more.length);
    assert.equal(await page.locator('#count-issued').innerText(), total);
    await admin.check('campaign-issued');

    // The list shows the campaign and its figures.
    await page.goto(`${base}/agent/vouchers`);
    const listed = page.getByRole('row').filter({ hasText: name });
    assert.match(await listed.innerText(), /Ouverte/);
    assert.equal(await listed.locator('td').nth(3).innerText(), total);
    await admin.check('campaigns-listed');

    // At the site: choose it, then a code typed loosely (lower case, spaces).
    await page.goto(`${base}/agent/scan`);
    await admin.check('scan-sites');
    await page.getByRole('link', { name: site.name }).click();
    await page.waitForURL(/\/agent\/scan\/[^/]+$/);
    const scanUrl = page.url();
    assert.ok((await page.locator('.scan-where').innerText()).includes(site.name));
    await admin.check('scan');
    const first = issued[0];
    const typed = first.code.toLowerCase().replaceAll('-', ' ');
    assert.deepEqual(await scan(admin, typed), {
      kind: 'scan-collected',
      heading: 'À remettre',
      detail: `3 × ${ITEM}`,
    });
    await admin.check('scan-collected');

    // The same code again from this device, at once: never a hand-over, but a warning
    // saying when and where it was handed over.
    const again = await scan(admin, first.code_qr, { status: 409 });
    assert.equal(again.kind, 'scan-already');
    assert.match(again.heading, /^Déjà remis à \d{2}:\d{2} à ce poste — ne pas remettre à nouveau$/);
    assert.equal(again.detail, null);
    await admin.check('scan-already-this-desk');

    // A code with a wrong check character.
    const second = issued[1].code_qr;
    const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    const wrongCheck = alphabet[(alphabet.indexOf(second.at(-1)) + 1) % alphabet.length];
    const refused = await scan(admin, second.slice(0, -1) + wrongCheck, { status: 422 });
    assert.equal(refused.kind, 'scan-refused');
    assert.equal(refused.heading, 'Code mal saisi : vérifiez chaque caractère.');
    assert.equal(refused.detail, null);
    await admin.check('scan-refused');
    const short = await scan(admin, second.slice(0, 20), { status: 422 });
    assert.deepEqual(short, {
      kind: 'scan-refused',
      heading: 'Code incomplet ou trop long.',
      detail: '20 / 24',
    });

    // A distributor created by the administrator, on another device.
    const distributorEmail = `distributeur-${pass}@mairie.example`;
    await page.goto(`${base}/agent/admin/agents`);
    await page.locator('#email').fill(distributorEmail);
    await page.locator('#role').selectOption('distributor');
    await page.getByRole('button', { name: 'Créer le compte' }).click();
    await page.waitForURL(/\/agent\/admin\/agents\/[^/]+$/);
    assert.equal(await page.locator('#role').inputValue(), 'distributor');
    setPassword(server, distributorEmail);

    distributor = await Journey.open(browser, `${pass}-distributor`, contextOptions);
    const other = distributor.page;
    await firstAgentLogin(distributor, base, distributorEmail);
    assert.equal(await other.getByRole('link', { name: 'Bons', exact: true }).count(), 0);
    const campaigns = `${base}/agent/vouchers`;
    await expectingStatus(distributor, campaigns, 403, () => other.goto(campaigns), 'GET');
    await other.goto(`${base}/agent`);
    await other.getByRole('link', { name: 'Distribution', exact: true }).first().click();
    await other.waitForURL(`${base}/agent/scan`);
    await distributor.check('scan-sites');
    await other.getByRole('link', { name: site.name }).click();
    await other.waitForURL(scanUrl);
    const already = await scan(distributor, first.code, { status: 409 });
    assert.equal(already.kind, 'scan-already');
    assert.match(
      already.heading,
      /^Déjà remis à \d{2}:\d{2} à un autre poste de ce lieu — ne pas remettre à nouveau$/,
    );
    assert.equal(already.detail, null);
    await distributor.check('scan-already');

    // Back at the campaign, one voucher is counted as collected.
    await page.goto(campaignUrl);
    assert.equal(await page.locator('#count-redeemed').innerText(), '1');

    // The dashboard: the collection is a small count, its charts are labelled SVG, and
    // a table downloads as CSV.
    await page.goto(`${base}/agent`);
    await page.getByRole('link', { name: 'Tableau de bord', exact: true }).first().click();
    await page.waitForURL(`${base}/agent/dashboard`);
    const collected = page.getByRole('row', { name: /^Bons retirés / }).first();
    assert.equal(await collected.locator('td').innerText(), '< 5');
    assert.ok((await page.locator('svg.chart[role="img"] > title').count()) >= 1);
    await admin.check('dashboard');
    await page.getByLabel('Au (inclus)').fill(day(-1));
    await page.getByLabel('Du', { exact: true }).fill(day(1));
    const refusedUrl =
      `${base}/agent/dashboard?department=&category=&campaign=&from=${day(1)}&to=${day(-1)}`;
    await expectingStatus(admin, refusedUrl, 422, () =>
      page.getByRole('button', { name: 'Afficher' }).click(), 'GET');
    assert.match(await page.getByRole('alert').innerText(), /La date de fin précède/);
    await admin.check('dashboard-refused');
    await page.goto(`${base}/agent/dashboard`);
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: /Télécharger le tableau \(CSV\) — Vue d'ensemble/ }).click(),
    ]);
    const csv = await readFile(await download.path(), 'utf8');
    assert.ok(csv.startsWith('\ufeffIndicateur;Valeur'), csv.slice(0, 40));

    admin.assertClean();
    distributor.assertClean();
  } finally {
    await distributor?.close();
    await admin.close();
  }
}

/**
 * A code read by the camera: the letter's QR code is what Chromium's fake camera films;
 * the scan page decodes it (BarcodeDetector, or jsQR where the browser has none) and
 * sends the form by itself.
 */
async function cameraJourney() {
  const base = server.base;
  const contextOptions = { viewport: MOBILE, locale: 'fr-FR' };
  const admin = await loggedInAdmin('admin-camera@mairie.example', 'camera-setup', contextOptions);
  const directory = await mkdtemp(join(tmpdir(), 'eguichet-camera-'));
  let cameraBrowser = null;
  let journey = null;
  try {
    const { page } = admin;
    await page.goto(`${base}/agent/vouchers`);
    await createCampaign(page, 'Masques lavables — caméra');
    const site = { name: 'Médiathèque (caméra)', address: '5 rue Pasteur, 59000 Lille', hours: '' };
    await addSite(page, site);
    const household = {
      reference: 'F-camera-001',
      allotment: 4,
      address: ['M. Loïc Hénin', '8 rue Pasteur', '59000 Lille'],
    };
    const buffer = householdsCsv([household]);
    const file = { name: 'foyer-camera.csv', mimeType: 'text/csv', buffer };
    const [line] = parseMailMerge((await importHouseholds(page, file, 'csv')).bytes);
    await page.goto(`${base}/agent/scan`);
    await page.getByRole('link', { name: site.name }).click();
    await page.waitForURL(/\/agent\/scan\/[^/]+$/);
    const scanUrl = page.url();
    // The same session, on the phone whose camera films the letter.
    const session = await admin.context.storageState();
    admin.assertClean();

    const video = join(directory, 'letter.y4m');
    writeQrVideo(video, line.code_qr);
    cameraBrowser = await launchBrowser([
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      `--use-file-for-fake-video-capture=${video}`,
    ]);
    journey = await Journey.open(cameraBrowser, 'camera', {
      ...contextOptions,
      storageState: session,
    });
    const phone = journey.page;
    await phone.goto(scanUrl);
    const decoder = await phone.evaluate(() =>
      'BarcodeDetector' in window ? 'BarcodeDetector' : 'jsQR',
    );
    console.log(`camera: QR codes decoded by ${decoder}`);
    await phone.locator('#identity_checked').check();
    const [response] = await Promise.all([
      phone.waitForResponse((r) => r.url() === scanUrl && r.request().method() === 'POST', {
        timeout: 20_000,
      }),
      phone.getByRole('button', { name: 'Scanner avec la caméra' }).click(),
    ]);
    assert.equal(response.status(), 200);
    await phone.locator('#scan-answer .scan-collected').waitFor();
    assert.deepEqual(await scanAnswer(phone), {
      kind: 'scan-collected',
      heading: 'À remettre',
      detail: `4 × ${ITEM}`,
    });
    await journey.check('scan-camera-collected');
    journey.assertClean();
  } finally {
    await journey?.close();
    await cameraBrowser?.close();
    await admin.close();
    await rm(directory, { recursive: true, force: true });
  }
}

describe('voucher campaign in a browser', { timeout: 150_000 }, () => {
  before(async () => {
    server = await Server.start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('at 320 px wide', { timeout: 60_000 }, async () => {
    await campaignJourney('mobile', MOBILE);
  });

  test('on a desktop', { timeout: 60_000 }, async () => {
    await campaignJourney('desktop', DESKTOP);
  });

  test('a code read by the camera', { timeout: 60_000 }, async () => {
    await cameraJourney();
  });
});

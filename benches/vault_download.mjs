// A locked vault's download in the browser, against age decrypting the same bytes from
// memory in the same page: a 100 MiB document is delivered, the vault locked with a
// virtual passkey (DevTools' authenticator, with PRF) and opened in Debian's headless
// Chromium, then, three times each and alternately,
//
// - download: the document's button clicked, timed until Chromium has saved the file
//   (fetch, streaming decryption, the page's Blobs, the save), the file checked byte
//   for byte (size and SHA-256), and the page's heap (JS heap, ArrayBuffers) sampled
//   every 50 ms meanwhile;
// - in memory: the same ciphertext fetched whole first (untimed), then timed through
//   the same decryptDocument of /static/vault-crypto.js with the same vault key
//   (opened with the recovery code shown at the lock) into a sink that only counts.
//
// It prints the median of each in MB/s (10^6 bytes of plaintext per second), their
// ratio (target ≥ 0.7) and the download's peak JS heap above the heap before its
// click (target < 64 MiB). It exits non-zero only when something does not work, never
// on a figure.
//
//   EGUICHET_BIN=/work/tgt/main/release/eguichet node benches/vault_download.mjs
//
// DOCUMENT_MIB sets another size (default 100; the server's default limit is 100 MiB).

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, readFileSync, readdirSync } from 'node:fs';
import { request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  DESKTOP,
  Journey,
  Server,
  launchBrowser,
  logInAsMarie,
  withAuthenticator,
} from '../e2e/support.mjs';

const MIB = 1024 * 1024;
const DOCUMENT_BYTES = Number(process.env.DOCUMENT_MIB || 100) * MIB;
const ROUNDS = 3;
const HEAP_SAMPLE_MS = 50;
const TARGET_RATIO = 0.7;
const TARGET_HEAP_MIB = 64;
// What age's in-memory decryption is fed: one STREAM chunk (64 KiB + tag) per read.
const MEMORY_CHUNK = 64 * 1024 + 16;

const AGENT_EMAIL = 'bench@mairie.example';
const FILE_NAME = 'bench-document.bin';
const LOCK = "Verrouiller mon coffre avec une clé d'accès";
const OPEN_WITH_PASSKEY = "Ouvrir mon coffre avec ma clé d'accès";

/**
 * Delivers the document through the agents' API as one streamed multipart body of
 * random bytes; returns its SHA-256.
 */
async function deliverDocument(server, token) {
  const metadata = JSON.stringify({
    recipient: {
      pivot: {
        family_name: 'Dupont',
        given_names: 'Marie Claire',
        birthdate: '1980-07-30',
        birthplace: '75056',
      },
    },
    title: 'Bench download',
    category: 'famille',
  });
  const boundary = `eguichet-bench-${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="metadata"\r\n` +
      `Content-Type: application/json\r\n\r\n${metadata}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${FILE_NAME}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const hash = createHash('sha256');
  const { status, body } = await new Promise((resolve, reject) => {
    const upload = request(
      `${server.direct}/api/v1/documents`,
      {
        method: 'POST',
        headers: {
          Authorization: `Bearer ${token}`,
          'Content-Type': `multipart/form-data; boundary=${boundary}`,
          'Content-Length': head.length + DOCUMENT_BYTES + tail.length,
        },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode, body: text }));
      },
    );
    upload.on('error', reject);
    (async () => {
      upload.write(head);
      for (let sent = 0; sent < DOCUMENT_BYTES; sent += MIB) {
        const chunk = randomBytes(Math.min(MIB, DOCUMENT_BYTES - sent));
        hash.update(chunk);
        if (!upload.write(chunk)) await new Promise((resume) => upload.once('drain', resume));
      }
      upload.end(tail);
    })().catch(reject);
  });
  assert.equal(status, 201, `delivery refused: ${body}`);
  return hash.digest('hex');
}

/** Locks the vault from its security page; returns the recovery code shown. */
async function lockVault(journey, base) {
  const { page } = journey;
  await page.getByRole('link', { name: LOCK }).click();
  await page.waitForURL(`${base}/vault/security`);
  await page.getByRole('button', { name: LOCK }).click();
  const shown = page.locator('#recovery-code-shown');
  await shown.waitFor();
  const code = (await shown.innerText()).replace(/\s/g, '');
  const group = Number((await page.locator('#challenge-label').innerText()).match(/\d/)[0]);
  await page.getByLabel(/^Recopiez le groupe n° \d$/).fill(code.split('-')[group - 1]);
  await page.getByRole('button', { name: 'Confirmer et verrouiller mon coffre' }).click();
  await page.getByRole('heading', { name: "Mes clés d'accès", exact: true }).waitFor({ timeout: 60_000 });
  return code;
}

function sha256File(path) {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject);
  });
}

/**
 * Samples the page's heap every HEAP_SAMPLE_MS until stopped: V8's used heap, and the
 * ArrayBuffer backing stores beside it (where typed arrays' bytes live).
 */
function sampleHeap(cdp) {
  let running = true;
  const peak = { used: 0, backing: 0, samples: 0 };
  const done = (async () => {
    while (running) {
      const usage = await cdp.send('Runtime.getHeapUsage');
      peak.used = Math.max(peak.used, usage.usedSize);
      peak.backing = Math.max(peak.backing, usage.backingStorageSize ?? 0);
      peak.samples += 1;
      await sleep(HEAP_SAMPLE_MS);
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return peak;
    },
  };
}

async function heapAtRest(cdp) {
  await cdp.send('HeapProfiler.collectGarbage');
  const usage = await cdp.send('Runtime.getHeapUsage');
  return { used: usage.usedSize, backing: usage.backingStorageSize ?? 0 };
}

// Jiffies (1/100 s) of CPU: the whole machine's, and this script's process tree's
// (itself, the server, Chromium), so that the report can say how busy the rest was.
function cpuJiffies() {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = fields.map(Number);
  const machine = user + nice + system + irq + softirq + steal;
  const parents = new Map();
  const used = new Map();
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parents.set(Number(pid), Number(after[1]));
      used.set(Number(pid), Number(after[11]) + Number(after[12]));
    } catch {
      // Gone meanwhile.
    }
  }
  const ours = (pid) => {
    for (let at = pid; at > 1; at = parents.get(at) ?? 0) if (at === process.pid) return true;
    return false;
  };
  let mine = 0;
  for (const [pid, jiffies] of used) if (ours(pid)) mine += jiffies;
  return { machine, mine };
}

/**
 * Runs a measurement; adds `otherCpu`, the seconds of CPU the rest of the machine used
 * meanwhile, and `elapsed`, the seconds it took (with its untimed preparation).
 */
async function besideOthers(measure) {
  const before = cpuJiffies();
  const started = performance.now();
  const result = await measure();
  const elapsed = (performance.now() - started) / 1000;
  const after = cpuJiffies();
  const other = after.machine - before.machine - (after.mine - before.mine);
  return { ...result, elapsed, otherCpu: Math.max(0, other) / 100 };
}

/** One download through the page's button: seconds, heap peaks above rest (bytes). */
async function measureDownload(journey, expectedHash) {
  const { page, cdp } = journey;
  const rest = await heapAtRest(cdp);
  const sampler = sampleHeap(cdp);
  const started = performance.now();
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 600_000 }),
    page.getByRole('button', { name: 'Télécharger' }).click(),
  ]);
  // The browser is handed the file once the page has decrypted all of it.
  const handedOver = (performance.now() - started) / 1000;
  const path = await download.path();
  const seconds = (performance.now() - started) / 1000;
  const peak = await sampler.stop();
  assert.equal(await download.failure(), null, 'the download failed');
  assert.equal(download.suggestedFilename(), FILE_NAME);
  assert.equal(await sha256File(path), expectedHash, 'the saved file differs from the document');
  await download.delete();
  return {
    seconds,
    handedOver,
    heap: Math.max(0, peak.used - rest.used),
    backing: Math.max(0, peak.backing - rest.backing),
    samples: peak.samples,
  };
}

/** The vault key, opened in the page with the recovery code, kept for the in-memory runs. */
async function holdKeyForBaseline(page, code) {
  await page.evaluate(async (recoveryCode) => {
    const { openWithCode } = await import('/static/vault-locked.js');
    const { importIdentity } = await import('/static/vault-crypto.js');
    window.benchVaultKey = await importIdentity(await openWithCode(recoveryCode));
  }, code);
}

/** One in-memory decryption of the whole ciphertext, fetched first: seconds, heap peaks. */
async function measureInMemory(journey, url) {
  const { page, cdp } = journey;
  await page.evaluate(async (address) => {
    const { inspectHeader } = await import('/static/vault-crypto.js');
    const response = await fetch(address, { credentials: 'same-origin' });
    if (!response.ok) throw new Error(`the ciphertext answered ${response.status}`);
    const declared = Number(response.headers.get('X-Age-Header-Length'));
    const bytes = new Uint8Array(await response.arrayBuffer());
    // As the page reads it: the declared length may or may not count the nonce.
    const headerLength = [declared, declared + 16].find((length) => {
      try {
        inspectHeader(bytes.subarray(0, length));
        return true;
      } catch {
        return false;
      }
    });
    if (headerLength === undefined) throw new Error('the stored header is not an age header');
    window.benchCiphertext = { bytes, headerLength };
  }, url);
  const rest = await heapAtRest(cdp);
  const sampler = sampleHeap(cdp);
  const { milliseconds, plaintextBytes } = await page.evaluate(async (chunk) => {
    const { decryptDocument } = await import('/static/vault-crypto.js');
    const { bytes, headerLength } = window.benchCiphertext;
    const header = bytes.slice(0, headerLength);
    const payload = bytes.subarray(headerLength);
    let offset = 0;
    const source = new ReadableStream({
      pull(controller) {
        if (offset >= payload.length) {
          controller.close();
          return;
        }
        const end = Math.min(offset + chunk, payload.length);
        controller.enqueue(payload.subarray(offset, end));
        offset = end;
      },
    }, { highWaterMark: 0 });
    const started = performance.now();
    const plaintext = await decryptDocument(window.benchVaultKey, header, source);
    let counted = 0;
    await plaintext.pipeTo(new WritableStream({
      write(part) {
        counted += part.length;
      },
    }));
    const milliseconds = performance.now() - started;
    delete window.benchCiphertext;
    return { milliseconds, plaintextBytes: counted };
  }, MEMORY_CHUNK);
  const peak = await sampler.stop();
  assert.equal(plaintextBytes, DOCUMENT_BYTES, 'in memory: not every byte was decrypted');
  return {
    seconds: milliseconds / 1000,
    heap: Math.max(0, peak.used - rest.used),
    backing: Math.max(0, peak.backing - rest.backing),
    samples: peak.samples,
  };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const mbPerSecond = (seconds) => DOCUMENT_BYTES / 1e6 / seconds;
const mib = (bytes) => (bytes / MIB).toFixed(1);

function report(downloads, inMemory) {
  const downloadRate = mbPerSecond(median(downloads.map((run) => run.seconds)));
  const memoryRate = mbPerSecond(median(inMemory.map((run) => run.seconds)));
  const ratio = downloadRate / memoryRate;
  const peak = (runs, field) => Math.max(...runs.map((run) => run[field]));
  const heapPeak = peak(downloads, 'heap');
  const row = (label, runs, rate) =>
    `| ${label} | ${runs.map((run) => run.seconds.toFixed(2)).join(' / ')} | ${rate.toFixed(1)} | ` +
    `+${mib(peak(runs, 'heap'))} MiB | +${mib(peak(runs, 'backing'))} MiB | ` +
    `${runs.reduce((sum, run) => sum + run.otherCpu, 0).toFixed(1)} |`;
  console.log(`\n${DOCUMENT_BYTES / MIB} MiB document, headless Chromium, median of ${ROUNDS} runs\n`);
  console.log('| path | runs (s) | MB/s | peak JS heap | peak ArrayBuffers | other CPU s |');
  console.log('|---|---|---:|---:|---:|---:|');
  console.log(row('download (click → file saved)', downloads, downloadRate));
  console.log(row('age from memory', inMemory, memoryRate));
  const handedOver = median(downloads.map((run) => run.handedOver));
  console.log(
    `\ndownload: decrypted in the page after ${handedOver.toFixed(2)} s (median), ` +
      `the rest is the browser saving the file`,
  );
  console.log(
    `ratio download / in memory: ${ratio.toFixed(2)} (target ≥ ${TARGET_RATIO}: ` +
      `${ratio >= TARGET_RATIO ? 'met' : 'missed'})`,
  );
  console.log(
    `download peak JS heap: +${mib(heapPeak)} MiB (target < ${TARGET_HEAP_MIB} MiB: ` +
      `${heapPeak < TARGET_HEAP_MIB * MIB ? 'met' : 'missed'})`,
  );
  // As benches/upload.rs: past a fifth of one CPU, other work has skewed the figures.
  const wall = [...downloads, ...inMemory].reduce((sum, run) => sum + run.elapsed, 0);
  const other = [...downloads, ...inMemory].reduce((sum, run) => sum + run.otherCpu, 0);
  if (other > 0.2 * wall) {
    console.log(
      `warning: other processes used ${other.toFixed(1)} s of CPU during ${wall.toFixed(1)} s ` +
        'of measurement: run it on a quiet machine',
    );
  }
}

async function main() {
  let server;
  let browser;
  let journey;
  try {
    console.error(`preparing: server, ${DOCUMENT_BYTES / MIB} MiB document, locked vault`);
    server = await Server.start({ localhost: true });
    server.run(['agent', 'create', '--email', AGENT_EMAIL, '--role', 'agent']);
    const token = server.run(['agent', 'token', '--email', AGENT_EMAIL]).trim();
    const documentHash = await deliverDocument(server, token);

    browser = await launchBrowser();
    journey = await Journey.open(browser, 'bench', {
      viewport: DESKTOP,
      locale: 'fr-FR',
      acceptDownloads: true,
    });
    const { page } = journey;
    await withAuthenticator(journey);
    await logInAsMarie(journey, server.base);
    const code = await lockVault(journey, server.base);

    await page.goto(`${server.base}/vault`);
    await page.getByRole('button', { name: OPEN_WITH_PASSKEY }).click();
    const button = page.getByRole('button', { name: 'Télécharger' });
    await button.waitFor();
    const url = await button.getAttribute('data-encrypted-url');
    assert.ok(url, 'the download button names its address');
    await holdKeyForBaseline(page, code);

    const downloads = [];
    const inMemory = [];
    for (let round = 1; round <= ROUNDS; round += 1) {
      const download = await besideOthers(() => measureDownload(journey, documentHash));
      downloads.push(download);
      console.error(
        `round ${round}: download ${download.seconds.toFixed(2)} s ` +
          `(decrypted in the page after ${download.handedOver.toFixed(2)} s), ` +
          `heap +${mib(download.heap)} MiB, buffers +${mib(download.backing)} MiB ` +
          `(${download.samples} samples), other CPU ${download.otherCpu.toFixed(2)} s`,
      );
      const memory = await besideOthers(() => measureInMemory(journey, url));
      inMemory.push(memory);
      console.error(
        `round ${round}: in memory ${memory.seconds.toFixed(2)} s, ` +
          `heap +${mib(memory.heap)} MiB, buffers +${mib(memory.backing)} MiB, ` +
          `other CPU ${memory.otherCpu.toFixed(2)} s`,
      );
    }
    journey.assertClean();
    report(downloads, inMemory);
  } finally {
    await journey?.close();
    await browser?.close();
    await server?.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});

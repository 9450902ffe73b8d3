// Bundles src/vault-crypto.mjs and what it imports from node_modules into
// ../static/vault-crypto.js, and gathers the licences of every bundled package into
// ../static/vault-crypto.LICENSES.txt. The output depends only on the lockfile and
// the sources (no paths, dates or source maps), so CI can rebuild it and compare.

import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const staticDir = join(here, '..', 'static');
const bundlePath = join(staticDir, 'vault-crypto.js');

const result = await build({
  absWorkingDir: here,
  entryPoints: ['src/vault-crypto.mjs'],
  bundle: true,
  format: 'esm',
  target: 'es2022',
  platform: 'browser',
  minify: true,
  sourcemap: false,
  // The noble libraries' "/*! … MIT License */" lines stay in the file itself.
  legalComments: 'eof',
  charset: 'utf8',
  banner: { js: '/* e-guichet vault crypto. Licences: /static/vault-crypto.LICENSES.txt */' },
  metafile: true,
  write: false,
  logLevel: 'warning',
});

const [output] = result.outputFiles;
await writeFile(bundlePath, output.contents);

// Each bundled package once, in a stable order, with its own licence text.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = input.match(/^(.*node_modules\/(@[^/]+\/[^/]+|[^/]+))\//);
  if (match) packages.set(match[1], match[2]);
}
const sections = [];
for (const [dir, name] of [...packages].sort((a, b) => a[0].localeCompare(b[0]))) {
  const manifest = JSON.parse(await readFile(join(here, dir, 'package.json'), 'utf8'));
  const licence = await readFile(join(here, dir, 'LICENSE'), 'utf8');
  sections.push(`${name} ${manifest.version} (${manifest.license})\n${'='.repeat(72)}\n${licence.trim()}\n`);
}
const header =
  'Licences of the third-party code bundled in vault-crypto.js\n' +
  '(built from web-crypto/package-lock.json by web-crypto/build.mjs).\n' +
  'The e-guichet code in the bundle is under the licence of the e-guichet repository.\n\n';
await writeFile(join(staticDir, 'vault-crypto.LICENSES.txt'), header + sections.join('\n'));

const sri = 'sha384-' + createHash('sha384').update(output.contents).digest('base64');
console.log(`static/vault-crypto.js: ${output.contents.length} bytes, ${sri}`);

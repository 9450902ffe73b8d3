// A locked vault in the citizen's page. Exports what its two pages share: the JSON
// calls, the passkey ceremonies, opening the vault with a passkey or the recovery code,
// adding a passkey, and the page's messages. On /vault it also runs the list itself:
// titles, file names and voucher codes opened in the page, documents decrypted on
// download. The vault key lives only in this module, as a non-extractable WebCrypto
// key: a navigation, a closed tab or a logout forgets it. Every text shown comes from
// the page (hidden `data-message` elements); this file holds none.

import {
  VaultCryptoError,
  decryptDocument,
  deriveWrappingKey,
  importIdentity,
  inspectHeader,
  newPasskeySalt,
  normalizeRecoveryCode,
  openSealed,
  openWithRecoveryCode,
  passkeyPrfSupport,
  prfExtensionInput,
  prfOutputFrom,
  unwrapIdentity,
  wrapIdentity,
} from '/static/vault-crypto.js';

/** A refusal the page explains with the hidden message of the same name. */
export class PageFailure extends Error {
  constructor(kind, options) {
    super(`vault page: ${kind}`, options);
    this.name = 'PageFailure';
    this.kind = kind;
  }
}

// ---------------------------------------------------------------------------------
// Messages

function messageText(key) {
  const element = document.querySelector(`[data-messages] [data-message="${CSS.escape(key)}"]`);
  return element ? element.textContent.trim() : null;
}

/** The page's message for a failure: its own kind, or the general one. */
export function failureKind(error) {
  if (error instanceof PageFailure || error instanceof VaultCryptoError) return error.kind;
  if (error instanceof DOMException) {
    // What navigator.credentials reports: the citizen cancelled or let it time out,
    // or the authenticator already holds a passkey of this vault.
    if (error.name === 'NotAllowedError' || error.name === 'AbortError') return 'cancelled';
    if (error.name === 'InvalidStateError') return 'passkey-in-use';
  }
  return 'failed';
}

/** Shows a failure in a section's alert region (and nothing else of that section's status). */
export function showFailure(section, error) {
  let kind = failureKind(error);
  if (messageText(kind) === null) kind = 'failed';
  if (kind === 'failed') console.warn('vault:', error);
  showStatus(section, null);
  const alert = section.querySelector('[data-alert]');
  if (alert) alert.textContent = messageText(kind) ?? '';
}

/** Shows a progress or success message in a section's status region; `null` clears it. */
export function showStatus(section, key) {
  const status = section.querySelector('[data-status]');
  if (status) status.textContent = key === null ? '' : messageText(key) ?? '';
  if (key !== null) clearAlert(section);
}

export function clearAlert(section) {
  const alert = section.querySelector('[data-alert]');
  if (alert) alert.textContent = '';
}

/** The text of a hidden message, for labels the page fills (the recovery-code challenge). */
export function pageText(key) {
  return messageText(key) ?? '';
}

/** Lets the browser paint a status before a few seconds of scrypt block the thread. */
export function nextPaint() {
  return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
}

// ---------------------------------------------------------------------------------
// The server's JSON calls

const csrfHolder = () => document.querySelector('[data-csrf]');

/** POSTs JSON with the session's CSRF token; a refusal becomes a PageFailure of its kind. */
export async function postJson(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: {
        'Content-Type': 'application/json',
        'X-CSRF-Token': csrfHolder()?.dataset.csrf ?? '',
      },
      body: JSON.stringify(body),
    });
  } catch (cause) {
    throw new PageFailure('failed', { cause });
  }
  if (!response.ok) throw await refusal(response);
  return response.json();
}

async function refusal(response) {
  let kind = response.status === 401 ? 'session_expired' : 'failed';
  try {
    const body = await response.json();
    if (typeof body?.error === 'string') kind = body.error;
  } catch {
    // Not JSON (a proxy's page): the status alone says what happened.
  }
  // The server's kinds are snake_case, the page's messages kebab-case.
  return new PageFailure(kind.replace(/_/g, '-'));
}

// ---------------------------------------------------------------------------------
// base64url (no padding), as the server and WebAuthn's JSON forms write binary values

export function toBase64url(bytes) {
  const view = bytes instanceof ArrayBuffer ? new Uint8Array(bytes) : bytes;
  let binary = '';
  for (let i = 0; i < view.length; i += 0x8000) {
    binary += String.fromCharCode(...view.subarray(i, i + 0x8000));
  }
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromBase64url(text) {
  if (typeof text !== 'string') throw new PageFailure('failed');
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

// ---------------------------------------------------------------------------------
// Passkeys

// The server's options are webauthn-rs JSON; members it leaves out are absent, but a
// null would make the browser's parser throw, so none is passed on.
function withoutNulls(value) {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, withoutNulls(v)]),
  );
}

function creationOptions(json, salt) {
  const publicKey = withoutNulls(json?.publicKey ?? json);
  let options = null;
  if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === 'function') {
    try {
      options = PublicKeyCredential.parseCreationOptionsFromJSON(publicKey);
    } catch {
      options = null; // An extension this browser's parser refuses: convert by hand.
    }
  }
  if (!options) {
    options = {
      ...publicKey,
      challenge: fromBase64url(publicKey.challenge),
      user: { ...publicKey.user, id: fromBase64url(publicKey.user.id) },
      excludeCredentials: (publicKey.excludeCredentials ?? []).map((credential) => ({
        ...credential,
        id: fromBase64url(credential.id),
      })),
    };
  }
  options.extensions = { ...(options.extensions ?? {}), ...prfExtensionInput(salt) };
  return options;
}

function requestOptions(json) {
  const publicKey = withoutNulls(json?.publicKey ?? json);
  if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === 'function') {
    try {
      return PublicKeyCredential.parseRequestOptionsFromJSON(publicKey);
    } catch {
      // Converted by hand below.
    }
  }
  return {
    ...publicKey,
    challenge: fromBase64url(publicKey.challenge),
    allowCredentials: (publicKey.allowCredentials ?? []).map((credential) => ({
      ...credential,
      id: fromBase64url(credential.id),
    })),
  };
}

/**
 * A credential as the server reads it (WebAuthn's JSON form), without the PRF output:
 * that output derives the key that wraps the vault identity, so it never leaves the page.
 */
function credentialJson(credential) {
  let json;
  if (typeof credential.toJSON === 'function') {
    json = credential.toJSON();
  } else {
    const response = credential.response;
    const extensions = credential.getClientExtensionResults();
    json = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
      response: response.attestationObject
        ? {
            clientDataJSON: toBase64url(response.clientDataJSON),
            attestationObject: toBase64url(response.attestationObject),
            transports: response.getTransports?.() ?? [],
          }
        : {
            clientDataJSON: toBase64url(response.clientDataJSON),
            authenticatorData: toBase64url(response.authenticatorData),
            signature: toBase64url(response.signature),
            userHandle: response.userHandle ? toBase64url(response.userHandle) : undefined,
          },
      clientExtensionResults: {
        ...(extensions.credProps ? { credProps: extensions.credProps } : {}),
        ...(extensions.prf ? { prf: { enabled: extensions.prf.enabled } } : {}),
      },
    };
  }
  if (json.clientExtensionResults?.prf) delete json.clientExtensionResults.prf.results;
  return json;
}

/**
 * Registers a passkey and reads its PRF output on `salt`. The output is asked of a
 * `get` right after `create`: some authenticators (Windows Hello) report PRF at
 * creation and then return nothing, and only an output really returned can open the
 * vault later. Throws 'no-prf' when there is none.
 */
async function createPasskey(options, salt) {
  const credential = await navigator.credentials.create({ publicKey: options });
  const assertion = await navigator.credentials.get({
    publicKey: {
      challenge: crypto.getRandomValues(new Uint8Array(32)),
      rpId: options.rp?.id,
      allowCredentials: [{
        type: 'public-key',
        id: credential.rawId,
        transports: credential.response.getTransports?.() ?? undefined,
      }],
      userVerification: 'required',
      extensions: prfExtensionInput(salt),
    },
  });
  return { credential, prfOutput: prfOutputFrom(assertion) };
}

/** Starts a passkey registration: the server's ceremony, then create and get. */
async function registerPasskey(startPath, startBody) {
  const started = await postJson(startPath, startBody);
  const salt = newPasskeySalt();
  const { credential, prfOutput } = await createPasskey(creationOptions(started.options, salt), salt);
  return { started, salt, credential, prfOutput };
}

/** Wraps the vault identity for a passkey just registered: the bytes the server keeps. */
export async function wrapForPasskey(identityString, prfOutput, salt) {
  const key = await deriveWrappingKey(prfOutput, salt);
  prfOutput.fill(0);
  return wrapIdentity(identityString, key);
}

/**
 * Locking, first half: a passkey registered for the new vault identity, its PRF
 * output, and the server's proof opened with the new identity. Nothing is saved yet.
 */
export async function beginLock(identityString, recipient) {
  const { started, salt, credential, prfOutput } = await registerPasskey(
    '/vault/security/lock/start',
    { recipient },
  );
  const proof = await openSealed(identityString, fromBase64url(started.proof));
  return { ceremony: started.ceremony, salt, credential, prfOutput, proof };
}

/** Locking, second half: the wrapped identity and the recovery copy sent to the server. */
export async function finishLock(pending, identityString, recoveryCopy, label) {
  const wrapped = await wrapForPasskey(identityString, pending.prfOutput, pending.salt);
  return postJson('/vault/security/lock/finish', {
    ceremony: pending.ceremony,
    credential: credentialJson(pending.credential),
    prfSalt: toBase64url(pending.salt),
    wrappedIdentity: toBase64url(wrapped),
    recoveryCopy: toBase64url(recoveryCopy),
    proof: pending.proof,
    label,
  });
}

/** Adds a passkey to a locked vault whose identity the page holds for the moment. */
export async function addPasskey(identityString, label) {
  const { started, salt, credential, prfOutput } = await registerPasskey(
    '/vault/security/passkeys/start',
    {},
  );
  const wrapped = await wrapForPasskey(identityString, prfOutput, salt);
  return postJson('/vault/security/passkeys/finish', {
    ceremony: started.ceremony,
    credential: credentialJson(credential),
    prfSalt: toBase64url(salt),
    wrappedIdentity: toBase64url(wrapped),
    label,
  });
}

/** The vault identity string, opened with one of the vault's passkeys. */
export async function openWithPasskey() {
  const started = await postJson('/vault/unlock/start', {});
  const publicKey = requestOptions(started.options);
  const salts = started.salts ?? {};
  const evalByCredential = Object.fromEntries(
    Object.entries(salts).map(([id, salt]) => [id, { first: fromBase64url(salt) }]),
  );
  publicKey.extensions = { ...(publicKey.extensions ?? {}), prf: { evalByCredential } };
  const assertion = await navigator.credentials.get({ publicKey });
  const prfOutput = prfOutputFrom(assertion);
  const opened = await postJson('/vault/unlock/finish', {
    ceremony: started.ceremony,
    credential: credentialJson(assertion),
  });
  // The PRF output is for the salt the page sent for this credential; a server
  // answering for another credential or salt cannot have the matching wrapped copy.
  if (opened.credentialId !== assertion.id || opened.prfSalt !== salts[assertion.id]) {
    prfOutput.fill(0);
    throw new PageFailure('wrong-key');
  }
  const key = await deriveWrappingKey(prfOutput, fromBase64url(opened.prfSalt));
  prfOutput.fill(0);
  return unwrapIdentity(fromBase64url(opened.wrappedIdentity), key);
}

/**
 * The vault identity string, opened with the recovery code. A code that cannot be one
 * is refused before asking the server, whose copy counts one of the limited attempts.
 */
export async function openWithCode(typed) {
  const code = normalizeRecoveryCode(typed);
  const { recoveryCopy } = await postJson('/vault/recovery', {});
  return openWithRecoveryCode(fromBase64url(recoveryCopy), code);
}

/** Runs an async action with its buttons disabled, reporting a failure in `section`. */
export async function busy(section, buttons, action) {
  for (const button of buttons) button.disabled = true;
  clearAlert(section);
  try {
    return await action();
  } catch (error) {
    showFailure(section, error);
    return undefined;
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------
// The /vault list of a locked vault

// Directional overrides and isolates could make a file name read backwards
// ("avis‮fdp.exe"); the server cannot clean names it cannot read, so the page does.
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const cleanText = (text) => String(text ?? '').replace(BIDI_CONTROLS, '');
const cleanFileName = (name) =>
  cleanText(name).replace(/[\u0000-\u001f\u007f/\\]/g, '_').trim() || 'document';

/** The vault key while this page is open; never stored, never sent. */
let vaultKey = null;
/** The identity string, held only between a recovery-code opening and the offer to add a passkey. */
let heldIdentity = null;
/** File names by encrypted-download address, once the titles are open. */
const fileNames = new Map();

async function holdKey(identityString) {
  vaultKey = await importIdentity(identityString);
}

async function revealList(list) {
  const opened = list.querySelectorAll('[data-sealed-metadata]');
  for (const title of opened) {
    const row = title.closest('[data-document]');
    try {
      const metadata = JSON.parse(
        await openSealed(vaultKey, fromBase64url(title.dataset.sealedMetadata)),
      );
      title.textContent = cleanText(metadata.title);
      const fileName = cleanFileName(metadata.file_name);
      const file = row?.querySelector('[data-file-name]');
      if (file) file.textContent = fileName;
      const button = row?.querySelector('[data-encrypted-url]');
      if (button) fileNames.set(button.dataset.encryptedUrl, fileName);
    } catch (error) {
      // One unreadable title must not hide the others; its download still works.
      console.warn('vault: a title could not be opened', error);
    }
  }
  for (const code of list.querySelectorAll('[data-sealed-code]')) {
    try {
      const text = cleanText(await openSealed(vaultKey, fromBase64url(code.dataset.sealedCode)));
      code.textContent = text.replace(/[\s-]/g, '').match(/.{1,4}/g)?.join('-') ?? text;
    } catch (error) {
      console.warn('vault: a voucher code could not be opened', error);
    }
  }
  for (const button of list.querySelectorAll('[data-encrypted-url]')) button.hidden = false;
}

// Reads the stored header off the front of the download. The server says how long
// it is; the age header is followed by its 16-byte payload nonce, which the header
// length may or may not count, so both readings are tried.
const NONCE_LENGTH = 16;
async function splitHeader(reader, declared) {
  if (!Number.isSafeInteger(declared) || declared <= 0) throw new PageFailure('tampered');
  const wanted = declared + NONCE_LENGTH;
  const chunks = [];
  let length = 0;
  while (length < wanted) {
    const { done, value } = await reader.read();
    if (done) throw new PageFailure('tampered');
    chunks.push(value);
    length += value.length;
  }
  const buffered = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    buffered.set(chunk, offset);
    offset += chunk.length;
  }
  for (const headerLength of [declared, wanted]) {
    try {
      inspectHeader(buffered.subarray(0, headerLength));
      return { header: buffered.slice(0, headerLength), rest: buffered.subarray(headerLength) };
    } catch {
      // Try the other reading.
    }
  }
  throw new PageFailure('tampered');
}

function payloadStream(first, reader) {
  let pending = first.length > 0 ? first : null;
  return new ReadableStream({
    async pull(controller) {
      if (pending) {
        controller.enqueue(pending);
        pending = null;
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

// The plaintext gathered as Blobs: Blob data lives outside the JavaScript heap, and
// reading with a reader keeps the stream's error kind ('tampered', 'interrupted'),
// which Response(stream).blob() would replace by a bare TypeError.
const BLOB_PART = 8 * 1024 * 1024;
async function collect(stream) {
  const reader = stream.getReader();
  const blobs = [];
  let parts = [];
  let pending = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    pending += value.length;
    if (pending >= BLOB_PART) {
      blobs.push(new Blob(parts));
      parts = [];
      pending = 0;
    }
  }
  return new Blob([...blobs, ...parts], { type: 'application/octet-stream' });
}

async function downloadDocument(url) {
  const response = await fetch(url, { credentials: 'same-origin' });
  if (response.status === 404) throw new PageFailure('not-found');
  if (response.status === 401) throw new PageFailure('session-expired');
  if (!response.ok || !response.body) throw new PageFailure('interrupted');
  const reader = response.body.getReader();
  let plaintext;
  try {
    const { header, rest } = await splitHeader(
      reader,
      Number(response.headers.get('X-Age-Header-Length')),
    );
    plaintext = await decryptDocument(vaultKey, header, payloadStream(rest, reader));
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  }
  // Nothing is handed to the browser before the whole payload is authenticated.
  const blob = await collect(plaintext);
  const address = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = address;
  link.download = fileNames.get(url) ?? 'document';
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The browser reads the Blob after the click returns: let it go a little later.
  setTimeout(() => URL.revokeObjectURL(address), 60_000);
}

async function startVaultList(root) {
  const openSection = root.querySelector('#vault-open');
  const openPasskey = root.querySelector('#open-passkey');
  const showRecovery = root.querySelector('#show-recovery');
  const recoveryForm = root.querySelector('#recovery-form');
  const recoveryInput = root.querySelector('#recovery-code');
  const registerOffer = root.querySelector('#register-offer');
  const list = document.querySelector('[data-locked-list]') ?? document;

  const support = await passkeyPrfSupport();
  openPasskey.hidden = support.reason === 'no-webauthn';
  if (support.reason === 'no-webauthn') {
    // Without passkeys the recovery code is the only way in: show it straight away.
    recoveryForm.hidden = false;
    showRecovery.hidden = true;
  }

  async function afterOpening(identityString, { offerPasskey }) {
    await holdKey(identityString);
    openSection.hidden = true;
    showStatus(root, 'opened');
    if (offerPasskey && support.reason !== 'no-webauthn' && registerOffer) {
      heldIdentity = identityString;
      registerOffer.hidden = false;
    }
    await revealList(list);
  }

  openPasskey.addEventListener('click', () =>
    busy(root, [openPasskey], async () => {
      showStatus(root, 'passkey');
      const identity = await openWithPasskey();
      await afterOpening(identity, { offerPasskey: false });
    }));

  showRecovery.addEventListener('click', () => {
    recoveryForm.hidden = !recoveryForm.hidden;
    showRecovery.setAttribute('aria-expanded', String(!recoveryForm.hidden));
    if (!recoveryForm.hidden) recoveryInput.focus();
  });

  recoveryForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const submit = recoveryForm.querySelector('button[type=submit]');
    busy(root, [submit, openPasskey], async () => {
      recoveryInput.removeAttribute('aria-invalid');
      try {
        // Check the form before the slow part, so a typo is told at once.
        normalizeRecoveryCode(recoveryInput.value);
        showStatus(root, 'opening');
        await nextPaint();
        const identity = await openWithCode(recoveryInput.value);
        recoveryInput.value = '';
        await afterOpening(identity, { offerPasskey: true });
      } catch (error) {
        const kind = failureKind(error);
        if (kind === 'wrong-code' || kind === 'malformed-code') {
          recoveryInput.setAttribute('aria-invalid', 'true');
          recoveryInput.focus();
        }
        throw error;
      }
    });
  });

  if (registerOffer) {
    const register = registerOffer.querySelector('#register-passkey');
    const decline = registerOffer.querySelector('#register-decline');
    const label = registerOffer.querySelector('#register-label');
    label.value = defaultPasskeyLabel();
    const forget = () => {
      heldIdentity = null;
      registerOffer.hidden = true;
    };
    register.addEventListener('click', () =>
      busy(registerOffer, [register, decline], async () => {
        if (!heldIdentity) return;
        showStatus(registerOffer, 'passkey');
        await addPasskey(heldIdentity, label.value.trim());
        forget();
        showStatus(root, 'added');
      }));
    decline.addEventListener('click', forget);
  }

  list.addEventListener('click', (event) => {
    const button = event.target.closest('[data-encrypted-url]');
    if (!button || !vaultKey) return;
    const row = button.closest('[data-document]') ?? root;
    busy(row, [button], async () => {
      showStatus(row, 'downloading');
      await downloadDocument(button.dataset.encryptedUrl);
      showStatus(row, null);
    });
  });
}

/** A name for a new passkey the citizen may change: the device's platform, when known. */
export function defaultPasskeyLabel() {
  return navigator.userAgentData?.platform ?? '';
}

const listRoot = document.getElementById('locked-vault');
if (listRoot) startVaultList(listRoot);

// The agent's delivery form, encrypted in the page (end to end): on submit, the vault
// key of the person named is asked for (POST /agent/recipients), the chosen file is
// encrypted to it as one age file, the title and file name are sealed to it, and the
// form is sent with those in place of the file and the title. The server only checks
// and stores the age file. Without this script (or on a browser that cannot run it)
// the form is sent as it is and the server encrypts on arrival. Every text shown
// comes from the page (hidden `data-message` elements).

import { encryptDocument, sealText } from '/static/vault-crypto.js';

const form = document.getElementById('deliver-form');

function messageText(key) {
  const element = document.querySelector(`[data-messages] [data-message="${CSS.escape(key)}"]`);
  return element ? element.textContent.trim() : '';
}

/** What the page needs to encrypt here; anything missing leaves the form to the server. */
function canEncryptHere() {
  try {
    return (
      window.isSecureContext &&
      typeof crypto !== 'undefined' &&
      typeof crypto.subtle === 'object' &&
      typeof crypto.getRandomValues === 'function' &&
      typeof ReadableStream === 'function' &&
      typeof Blob.prototype.stream === 'function' &&
      typeof fetch === 'function' &&
      new DataTransfer().items !== undefined
    );
  } catch {
    return false;
  }
}

/** A refusal shown in the form's error area. */
class DeliveryRefused extends Error {
  constructor(text) {
    super(text);
    this.name = 'DeliveryRefused';
  }
}

function field(name) {
  return form.elements.namedItem(name);
}

function value(name) {
  const element = field(name);
  return element && 'value' in element ? element.value : '';
}

/** The recipient as the server reads it from the form (DeliveryFields::metadata_json). */
function recipientFromForm() {
  if (value('recipient_kind') === 'nrn') return { nrn: value('nrn') };
  return {
    pivot: {
      family_name: value('family_name'),
      given_names: value('given_names'),
      birthdate: value('birthdate').trim(),
      birthplace: value('birthplace').trim(),
    },
  };
}

/** The vault key of the person the form names, or a refusal in the page's words. */
async function vaultKey(recipient) {
  let response;
  try {
    response = await fetch('/agent/recipients', {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'X-CSRF-Token': value('csrf'),
      },
      body: JSON.stringify({ recipient }),
      credentials: 'same-origin',
      redirect: 'error',
    });
  } catch {
    throw new DeliveryRefused(messageText('failed'));
  }
  const body = await response.json().catch(() => null);
  if (response.ok && body && typeof body.recipient === 'string') return body.recipient;
  // An expired session answers with a page, not JSON: the same advice as a refusal.
  const expired = response.status === 401 || response.status === 403;
  const code = body && typeof body.error === 'string' ? body.error : expired ? 'forbidden' : '';
  switch (code) {
    case 'invalid_recipient':
    case 'invalid_metadata':
      // The same words as the server's form: its sentence, then what is wrong.
      throw new DeliveryRefused(`${messageText('invalid')} ${body.message ?? ''}`.trim());
    case 'unknown_recipient':
    case 'too_many_lookups':
    case 'forbidden':
      throw new DeliveryRefused(messageText(code));
    default:
      throw new DeliveryRefused(messageText('failed'));
  }
}

/** The complete age file of `file` for `recipient`, as a Blob (never whole in a JS array). */
async function encryptFile(recipient, file) {
  const { header, payload } = encryptDocument(recipient, file.stream());
  // The payload is collected by the browser's own Blob storage, chunk by chunk.
  const encryptedPayload = await new Response(payload).blob();
  return new Blob([await header, encryptedPayload]);
}

function base64url(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function show(element, text) {
  element.textContent = text;
}

if (form && canEncryptHere()) {
  const titleInput = field('title');
  const fileInput = field('file');
  const recipientInput = field('encryption_recipient');
  const sealedInput = field('sealed_metadata');
  const submitButton = form.querySelector('button[type="submit"]');
  const errorArea = document.getElementById('deliver-error');
  const progress = document.getElementById('deliver-progress');
  let sending = false;

  document.getElementById('deliver-intro')?.setAttribute('hidden', '');
  document.getElementById('deliver-intro-in-page')?.removeAttribute('hidden');

  // Back to a form already sent (history): it must not go again with the encrypted
  // file, nor without its title.
  const restore = () => {
    sending = false;
    titleInput.setAttribute('name', 'title');
    recipientInput.value = '';
    sealedInput.value = '';
    submitButton.disabled = false;
    show(progress, '');
  };
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) {
      restore();
      fileInput.value = '';
    }
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (sending) return;
    const file = fileInput.files[0];
    if (!file) return;
    sending = true;
    submitButton.disabled = true;
    show(errorArea, '');
    fileInput.removeAttribute('aria-describedby');
    show(progress, messageText('encrypting'));
    try {
      const recipient = await vaultKey(recipientFromForm());
      const encrypted = await encryptFile(recipient, file);
      const sealed = await sealText(
        recipient,
        JSON.stringify({ title: titleInput.value, file_name: file.name }),
      );
      recipientInput.value = recipient;
      sealedInput.value = base64url(sealed);
      // The file's name travels sealed; the server keeps only its type.
      const files = new DataTransfer();
      files.items.add(new File([encrypted], 'document.age', { type: file.type }));
      fileInput.files = files.files;
      // The title stays on screen but leaves the form: it travels sealed only.
      titleInput.removeAttribute('name');
      show(progress, messageText('sending'));
      form.submit();
    } catch (error) {
      restore();
      const text = error instanceof DeliveryRefused ? error.message : messageText('failed');
      show(errorArea, text);
      fileInput.setAttribute('aria-describedby', 'deliver-error');
      if (!(error instanceof DeliveryRefused)) console.warn('delivery not encrypted', error);
    }
  });
}

// The vault's security page. An open vault is locked here: a new vault identity made
// in the page, a passkey registered and asked for its PRF output, the recovery code
// shown once and checked, then the identity wrapped for the passkey and sealed under
// the code. A locked vault's page adds passkeys, after opening the vault with a
// passkey or the recovery code; the identity string is dropped once it is used.
// Every text shown comes from the page (hidden `data-message` elements).

import {
  answersRecoveryChallenge,
  formatRecoveryCode,
  generateVaultIdentity,
  importIdentity,
  newRecoveryCode,
  normalizeRecoveryCode,
  passkeyPrfSupport,
  recoveryCodeChallenge,
  sealToRecoveryCode,
} from '/static/vault-crypto.js';
import {
  PageFailure,
  addPasskey,
  beginLock,
  busy,
  defaultPasskeyLabel,
  failureKind,
  finishLock,
  nextPaint,
  openWithCode,
  openWithPasskey,
  pageText,
  showFailure,
  showStatus,
} from '/static/vault-locked.js';

const root = document.getElementById('vault-security');

/** The recovery code shown as groups a narrow screen may wrap between, never inside. */
function showCode(element, code) {
  const groups = formatRecoveryCode(code).split('-');
  element.replaceChildren();
  groups.forEach((group, index) => {
    element.append(group);
    if (index < groups.length - 1) element.append('-', document.createElement('wbr'));
  });
}

async function startLocking(section) {
  const lockStep = section.querySelector('#lock-step');
  const start = section.querySelector('#lock-start');
  const label = section.querySelector('#lock-label');
  const codeStep = section.querySelector('#code-step');
  const codeShown = section.querySelector('#recovery-code-shown');
  const confirmForm = section.querySelector('#confirm-form');
  const challengeLabel = section.querySelector('#challenge-label');
  const answer = section.querySelector('#challenge-answer');
  const print = section.querySelector('#print-code');

  const support = await passkeyPrfSupport();
  if (!support.supported) {
    showFailure(section, new PageFailure(support.reason));
    return;
  }
  lockStep.hidden = false;
  label.value = defaultPasskeyLabel();

  // What one locking holds between its two steps; dropped when it ends either way.
  let pending = null;
  const abandon = () => {
    pending = null;
    codeShown.replaceChildren();
    answer.value = '';
    codeStep.hidden = true;
    lockStep.hidden = false;
  };

  start.addEventListener('click', () =>
    busy(section, [start], async () => {
      showStatus(section, 'passkey');
      const { identity, recipient } = await generateVaultIdentity();
      // A browser that could not keep the vault key as a WebCrypto key could not open
      // the vault it locks: refuse before anything is registered.
      await importIdentity(identity);
      const begun = await beginLock(identity, recipient);
      const code = newRecoveryCode();
      const challenge = recoveryCodeChallenge(code);
      pending = { ...begun, identity, code, challenge, label: label.value.trim() };
      showStatus(section, null);
      showCode(codeShown, code);
      challengeLabel.textContent = pageText(`challenge-${challenge.number}`);
      lockStep.hidden = true;
      codeStep.hidden = false;
      section.querySelector('#code-heading').focus();
    }));

  print.addEventListener('click', () => window.print());

  confirmForm.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!pending) return;
    const submit = confirmForm.querySelector('button[type=submit]');
    busy(section, [submit, print], async () => {
      if (!answersRecoveryChallenge(pending.code, pending.challenge.index, answer.value)) {
        answer.setAttribute('aria-invalid', 'true');
        answer.focus();
        showFailure(section, new PageFailure('wrong-group'));
        return;
      }
      answer.removeAttribute('aria-invalid');
      showStatus(section, 'locking');
      // scrypt takes a few seconds and holds the thread: the status must show first.
      await nextPaint();
      try {
        const recoveryCopy = await sealToRecoveryCode(pending.identity, pending.code);
        await finishLock(pending, pending.identity, recoveryCopy, pending.label);
      } catch (error) {
        // Nothing was saved: the code on screen must not be kept by mistake.
        abandon();
        throw error;
      }
      pending = null;
      window.location.assign('/vault/security');
    });
  });
}

async function startAddingPasskeys(section) {
  const openStep = section.querySelector('#open-step');
  const openPasskey = section.querySelector('#open-passkey');
  const showRecovery = section.querySelector('#show-recovery');
  const recoveryForm = section.querySelector('#recovery-form');
  const recoveryInput = section.querySelector('#recovery-code');
  const addStep = section.querySelector('#add-step');
  const label = section.querySelector('#add-label');
  const add = section.querySelector('#add-passkey-button');
  const cancel = section.querySelector('#add-cancel');

  const support = await passkeyPrfSupport();
  openPasskey.hidden = support.reason === 'no-webauthn';

  // The identity string, only between opening the vault and saving the new passkey.
  let identity = null;
  const opened = (identityString) => {
    identity = identityString;
    openStep.hidden = true;
    addStep.hidden = false;
    label.value = defaultPasskeyLabel();
    showStatus(section, 'opened');
    // A second passkey prompt needs a fresh click (Safari asks for one per call).
    add.focus();
  };
  const forget = () => {
    identity = null;
    addStep.hidden = true;
    openStep.hidden = false;
  };
  if (!support.supported) {
    add.disabled = true;
    showFailure(section, new PageFailure(support.reason));
  }

  openPasskey.addEventListener('click', () =>
    busy(section, [openPasskey], async () => {
      showStatus(section, 'passkey');
      opened(await openWithPasskey());
    }));

  showRecovery.addEventListener('click', () => {
    recoveryForm.hidden = !recoveryForm.hidden;
    showRecovery.setAttribute('aria-expanded', String(!recoveryForm.hidden));
    if (!recoveryForm.hidden) recoveryInput.focus();
  });

  recoveryForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const submit = recoveryForm.querySelector('button[type=submit]');
    busy(section, [submit, openPasskey], async () => {
      recoveryInput.removeAttribute('aria-invalid');
      try {
        normalizeRecoveryCode(recoveryInput.value);
        showStatus(section, 'opening');
        await nextPaint();
        const identityString = await openWithCode(recoveryInput.value);
        recoveryInput.value = '';
        opened(identityString);
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

  add.addEventListener('click', () =>
    busy(section, [add, cancel], async () => {
      if (!identity) return;
      showStatus(section, 'passkey');
      await addPasskey(identity, label.value.trim());
      identity = null;
      window.location.assign('/vault/security');
    }));

  cancel.addEventListener('click', () => {
    forget();
    showStatus(section, null);
  });
}

if (root) {
  const lockSection = root.querySelector('#lock');
  const addSection = root.querySelector('#add-passkey');
  if (lockSection) startLocking(lockSection);
  if (addSection) startAddingPasskeys(addSection);
}

// The API client: JSON over fetch with the operator's key (kept in sessionStorage, so it
// lives as long as the tab), one key prompt shared by every request that hit 401, and
// problem+json errors turned into Error objects that say what went wrong.

/** What the shell's inline boot script (boot.js) set up before any module loaded. */
export const { KEY_STORAGE, OVERVIEW_REQUESTS, apiHeaders, takeEarly } = globalThis.anomalydBoot;

let keyPrompt = null;

/** An error answer of the API (problem+json) or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, title, detail, body) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
    this.body = body;
  }
}

export function storedKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

/** Asks for a key once for all waiting requests; resolves when one was entered. */
function askKey(message) {
  if (keyPrompt) return keyPrompt;
  const dialog = document.getElementById('key-dialog');
  const form = document.getElementById('key-form');
  const input = document.getElementById('key-input');
  const err = document.getElementById('key-error');
  err.hidden = !message;
  err.textContent = message || '';
  keyPrompt = new Promise((resolve) => {
    const done = (ev) => {
      ev.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      sessionStorage.setItem(KEY_STORAGE, key);
      input.value = '';
      form.removeEventListener('submit', done);
      dialog.close();
      keyPrompt = null;
      document.dispatchEvent(new CustomEvent('anomalyd:key'));
      resolve();
    };
    form.addEventListener('submit', done);
    // Escape would leave the page without data: the prompt stays until a key is given.
    dialog.addEventListener('cancel', (ev) => ev.preventDefault(), { once: true });
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
  return keyPrompt;
}

/** `method path` with an optional JSON body; resolves to the parsed JSON answer. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  for (let attempt = 0; ; attempt++) {
    const key = storedKey();
    const headers = apiHeaders();
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    // The overview's first requests may already be on their way (boot.js).
    const early = attempt === 0 && method === 'GET' && body === undefined ? await takeEarly(path) : null;
    let res = early;
    if (!res) {
      try {
        res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
      } catch (e) {
        if (e.name === 'AbortError') throw e;
        throw new ApiError(0, 'unreachable', 'Cannot reach the anomalyd server. Is it running? Retrying shortly.');
      }
    }
    if (res.status === 401 && attempt < 5) {
      if (key) forgetKey();
      await askKey(key ? 'That key was refused. Check it, or create a new one.' : '');
      continue;
    }
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!res.ok) {
      const detail = json && (json.detail || json.title);
      throw new ApiError(res.status, json && json.title, detail || `${method} ${path}: HTTP ${res.status}`, json);
    }
    return json;
  }
}

/** A query string from an object, leaving out empty values. */
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}

// The overview's data, requested while the shell is still being parsed. The server inlines
// this file into the shell (a classic script, allowed by its hash in the page's
// Content-Security-Policy), so these requests leave before any other file is fetched and
// take the browser's first connections; on a cold load that overlap is most of the time
// between navigation and a drawn overview. The API client (api.js) takes each answer once;
// anything not taken is simply dropped. Everything the modules need from here is in
// `globalThis.anomalydBoot`, re-exported by api.js.
(() => {
  /** Where the operator's API key is kept (sessionStorage: it lives as long as the tab). */
  const KEY_STORAGE = 'anomalyd.api-key';

  /** The requests the overview makes on every refresh, in the order it draws them. */
  const OVERVIEW_REQUESTS = [
    '/api/v1/dashboard/stats',
    '/api/v1/dashboard/trends?bucket=hour',
    '/api/v1/incidents?status=open&limit=100',
    '/api/v1/anomalies?limit=8',
  ];

  /** The headers of an API request: JSON, and the stored key when there is one. */
  function apiHeaders() {
    const headers = { Accept: 'application/json' };
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) headers.Authorization = `Bearer ${key}`;
    return headers;
  }

  const early = new Map();
  if (/^#?\/?$/.test(location.hash)) {
    const headers = apiHeaders();
    // A failed early request is not an error: the client then asks again on its own.
    for (const path of OVERVIEW_REQUESTS) early.set(path, fetch(path, { headers }).catch(() => null));
  }

  /** The early answer for `path` (a promise of a Response, or of null), at most once. */
  function takeEarly(path) {
    const answer = early.get(path);
    early.delete(path);
    return answer;
  }

  globalThis.anomalydBoot = Object.freeze({ KEY_STORAGE, OVERVIEW_REQUESTS, apiHeaders, takeEarly });
})();

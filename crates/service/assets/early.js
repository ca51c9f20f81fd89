// The overview's data, requested the moment the shell is parsed. The shell loads this file
// as an async module with no imports, so these requests travel while the browser is still
// fetching and evaluating the rest of the dashboard; on a cold load that overlap is most of
// the time between navigation and a drawn overview. The API client takes each answer once
// (`takeEarly`); anything not taken is simply dropped.

/** Where the operator's API key is kept (sessionStorage: it lives as long as the tab). */
export const KEY_STORAGE = 'anomalyd.api-key';

/** The requests the overview makes on every refresh, in the order it draws them. */
export const OVERVIEW_REQUESTS = [
  '/api/v1/dashboard/stats',
  '/api/v1/dashboard/trends?bucket=hour',
  '/api/v1/incidents?status=open&limit=100',
  '/api/v1/anomalies?limit=8',
];

/** The headers of an API request: JSON, and the stored key when there is one. */
export function apiHeaders() {
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
export function takeEarly(path) {
  const answer = early.get(path);
  early.delete(path);
  return answer;
}

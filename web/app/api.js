// The broker's REST API (/api/v1), as the pages use it.
//
// The session itself is the HttpOnly cookie the browser keeps; scripts never
// see it.  Every non-GET request must carry the CSRF token from the log-in
// reply.  It lives in memory and, so that a reload of the tab keeps working,
// in sessionStorage (this tab only, gone when the tab closes).  It is useless
// without the cookie, and nothing else is ever stored in the browser.

const CSRF_KEY = 'atrium.csrf';
let csrf = sessionStorage.getItem(CSRF_KEY);

export class ApiError extends Error {
    constructor(status, code, detail, retryAfter) {
        super(detail || code);
        this.status = status;
        this.code = code;
        this.detail = detail;
        this.retryAfter = retryAfter;
    }
}

// Words for the errors a person can act on; anything else shows the
// broker's own detail sentence.
const WORDS = {
    network: 'The broker cannot be reached. Check your network connection and try again.',
    bad_credentials: 'Wrong user name, password or code.',
    totp_required: 'Enter the 6-digit code from your authenticator app.',
    totp_enrollment_required:
        'Your role requires a second factor, but none is set up. Ask an administrator to enrol one.',
    account_disabled: 'This account is disabled. Ask an administrator.',
    unauthenticated: 'Your session has ended. Please log in again.',
    forbidden: 'Your role does not allow this.',
    csrf: 'This page lost its session token. Please log in again.',
};

export function errorText(err) {
    if (!(err instanceof ApiError))
        return String(err && err.message ? err.message : err);
    if (err.code === 'locked')
        return `Too many failed log-ins. Try again in ${err.retryAfter || 'a few'} seconds.`;
    if (err.code === 'no_desktop_ready')
        return `${err.detail || 'No desktop is ready yet.'}${err.retryAfter ? ` (about ${err.retryAfter} s)` : ''}`;
    if (err.code === 'unavailable')
        return `The broker cannot reach its database right now. ${err.detail || ''}`.trim();
    return WORDS[err.code] || err.detail || `The request failed (HTTP ${err.status}).`;
}

// Called with the error when any request other than log-in comes back 401.
let onUnauthenticated = () => {};
export function setUnauthenticatedHandler(fn) {
    onUnauthenticated = fn;
}

// Called when the broker says this session may only enrol a second factor.
let onEnrolRequired = () => {};
export function setEnrolHandler(fn) {
    onEnrolRequired = fn;
}

export function setCsrf(token) {
    csrf = token;
    if (token)
        sessionStorage.setItem(CSRF_KEY, token);
    else
        sessionStorage.removeItem(CSRF_KEY);
}

export function hasCsrf() {
    return !!csrf;
}

// One request.  Resolves to the parsed JSON body; rejects with ApiError.
export async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
    }
    if (method !== 'GET' && method !== 'HEAD' && csrf)
        headers['X-CSRF-Token'] = csrf;
    let res;
    try {
        res = await fetch(`/api/v1${path}`, init);
    } catch (e) {
        throw new ApiError(0, 'network', WORDS.network);
    }
    let data = null;
    const type = res.headers.get('Content-Type') || '';
    if (type.startsWith('application/json')) {
        try {
            data = await res.json();
        } catch (e) {
            data = null;
        }
    }
    if (!res.ok) {
        const err = new ApiError(res.status, (data && data.error) || `http_${res.status}`,
            (data && data.detail) || res.statusText, res.headers.get('Retry-After'));
        if (res.status === 401 && path !== '/login')
            onUnauthenticated(err);
        if (res.status === 403 && err.code === 'totp_enrollment_required' && path !== '/me')
            onEnrolRequired(err);
        throw err;
    }
    return data;
}

// Upload @file as the raw body of POST /api/v1@path (a golden image).  fetch
// reports no upload progress, so this is XMLHttpRequest: onProgress(sent,
// total) follows its upload events.  Returns {done, abort}: done resolves to
// the parsed JSON answer or rejects with ApiError (code 'aborted' after
// abort()).
export function uploadFile(path, file, onProgress) {
    const xhr = new XMLHttpRequest();
    const done = new Promise((resolve, reject) => {
        xhr.open('POST', `/api/v1${path}`);
        xhr.withCredentials = true;
        xhr.setRequestHeader('Accept', 'application/json');
        xhr.setRequestHeader('Content-Type', 'application/octet-stream');
        if (csrf)
            xhr.setRequestHeader('X-CSRF-Token', csrf);
        xhr.upload.addEventListener('progress', (e) => {
            if (onProgress)
                onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
        });
        xhr.addEventListener('load', () => {
            let data = null;
            try {
                data = JSON.parse(xhr.responseText);
            } catch (e) {
                data = null;
            }
            if (xhr.status >= 200 && xhr.status < 300) {
                resolve(data);
                return;
            }
            const err = new ApiError(xhr.status, (data && data.error) || `http_${xhr.status}`,
                (data && data.detail) || xhr.statusText, xhr.getResponseHeader('Retry-After'));
            if (xhr.status === 401)
                onUnauthenticated(err);
            reject(err);
        });
        xhr.addEventListener('error', () => reject(new ApiError(0, 'network',
            'The upload was cut off: the broker closed the connection or cannot be reached.')));
        xhr.addEventListener('abort', () => reject(new ApiError(0, 'aborted', 'The upload was cancelled.')));
        xhr.send(file);
    });
    return { done, abort: () => xhr.abort() };
}

// A query string from an object, leaving out empty values.
export function qs(params) {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params))
        if (v !== undefined && v !== null && v !== '')
            u.set(k, String(v));
    const s = u.toString();
    return s ? `?${s}` : '';
}

// GET /metrics (Prometheus text) parsed into {name: [{labels, value}]}.
export async function metrics() {
    let res;
    try {
        res = await fetch('/metrics', { credentials: 'same-origin', cache: 'no-store' });
    } catch (e) {
        throw new ApiError(0, 'network', WORDS.network);
    }
    if (!res.ok)
        throw new ApiError(res.status, `http_${res.status}`, 'The broker did not give its metrics.');
    const out = {};
    for (const line of (await res.text()).split('\n')) {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
        if (!m)
            continue;
        const labels = {};
        for (const lm of (m[3] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
            labels[lm[1]] = lm[2];
        (out[m[1]] = out[m[1]] || []).push({ labels, value: Number(m[4]) });
    }
    return out;
}

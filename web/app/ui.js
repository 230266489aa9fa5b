// Small DOM helpers shared by every page.  Text always goes in as text
// (textContent), never as markup, so nothing from the API can become HTML.

import { api, errorText, qs } from './api.js';

// h('button', {class: 'btn', onclick: fn}, 'Save') -> element
export function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === undefined || v === null || v === false)
            continue;
        if (k.startsWith('on') && typeof v === 'function')
            el.addEventListener(k.slice(2), v);
        else if (k === 'class')
            el.className = v;
        else if (k === 'dataset')
            Object.assign(el.dataset, v);
        else if (k in el && typeof v !== 'string' && k !== 'list')
            el[k] = v;
        else
            el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
}

function append(el, children) {
    for (const c of children.flat(Infinity)) {
        if (c === undefined || c === null || c === false)
            continue;
        el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
}

export function clear(el, ...children) {
    el.replaceChildren();
    append(el, children);
    return el;
}

// A short message in the corner; kind: 'ok' | 'error' | 'info'.
export function toast(message, kind = 'info') {
    const box = document.getElementById('toasts');
    const t = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
        message);
    box.append(t);
    while (box.children.length > 3)
        box.firstElementChild.remove(); // the newest three are enough
    setTimeout(() => t.remove(), kind === 'error' ? 9000 : 4000);
}

// An inline message area for a form or a page.
export function messageBox() {
    const el = h('div', { class: 'msg', 'aria-live': 'polite' });
    el.show = (text, kind = 'error') => {
        el.className = `msg msg-${kind}`;
        el.setAttribute('role', kind === 'error' ? 'alert' : 'status');
        el.textContent = text;
    };
    el.hide = () => {
        el.className = 'msg';
        el.textContent = '';
    };
    return el;
}

// Ask before a destructive act.  Resolves true when confirmed.
export function confirmDialog(question, confirmLabel = 'Confirm') {
    return new Promise((resolve) => {
        const dlg = h('dialog', { class: 'dialog', 'aria-label': question });
        const done = (v) => {
            dlg.close();
            dlg.remove();
            resolve(v);
        };
        dlg.append(h('p', {}, question),
            h('div', { class: 'actions' },
                h('button', { type: 'button', class: 'btn', onclick: () => done(false) }, 'Cancel'),
                h('button', { type: 'button', class: 'btn btn-danger', onclick: () => done(true) },
                    confirmLabel)));
        dlg.addEventListener('cancel', (e) => {
            e.preventDefault();
            done(false);
        });
        document.body.append(dlg);
        dlg.showModal();
    });
}

// A modal with arbitrary content (a form).  Returns {dialog, close}.
export function modal(title, content) {
    const dlg = h('dialog', { class: 'dialog dialog-wide', 'aria-labelledby': 'dlg-title' });
    const close = () => {
        dlg.close();
        dlg.remove();
    };
    dlg.append(h('div', { class: 'dialog-head' }, h('h2', { id: 'dlg-title' }, title),
        h('button', { type: 'button', class: 'btn btn-quiet', 'aria-label': 'Close', onclick: close },
            '✕')), content);
    dlg.addEventListener('cancel', (e) => {
        e.preventDefault();
        close();
    });
    document.body.append(dlg);
    dlg.showModal();
    return { dialog: dlg, close };
}

// Run an async action from a button: disabled while it runs, errors shown.
export async function busy(button, fn, errorTarget) {
    if (button)
        button.disabled = true;
    try {
        return await fn();
    } catch (e) {
        if (errorTarget && errorTarget.show)
            errorTarget.show(errorText(e));
        else
            toast(errorText(e), 'error');
        return undefined;
    } finally {
        if (button)
            button.disabled = false;
    }
}

export function fmtTime(iso) {
    if (!iso)
        return '—';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime()))
        return String(iso);
    return d.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

export function fmtAgo(iso) {
    if (!iso)
        return 'never';
    const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 0)
        return 'just now';
    if (s < 60)
        return `${s} s ago`;
    if (s < 3600)
        return `${Math.floor(s / 60)} min ago`;
    if (s < 86400)
        return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
}

export function fmtMiB(mb) {
    if (mb === null || mb === undefined)
        return '—';
    return mb >= 1024 ? `${(mb / 1024).toFixed(mb % 1024 ? 1 : 0)} GiB` : `${mb} MiB`;
}

const BAD = new Set(['failed', 'offline', 'fenced', 'failure', 'denied', 'cancelled', 'no_capacity', 'failing', 'disabled', 'locked']);
const GOOD = new Set(['ready', 'online', 'connected', 'succeeded', 'success', 'ok', 'enabled', 'active', 'available']);
const BUSY = new Set(['provisioning', 'booting', 'running', 'queued', 'refreshing', 'logging_off',
    'migrating', 'deleting', 'assigned', 'maintenance', 'degraded', 'lost']);

export function badge(state) {
    const s = state || 'unknown';
    const kind = BAD.has(s) ? 'bad' : GOOD.has(s) ? 'good' : BUSY.has(s) ? 'busy' : 'plain';
    return h('span', { class: `badge badge-${kind}` }, s.replace(/_/g, ' '));
}

// A field: label + control (+ hint), ids wired for screen readers.
let fieldSeq = 0;
export function field(label, control, hint) {
    const id = control.id || `f${++fieldSeq}`;
    control.id = id;
    const hintEl = hint ? h('small', { class: 'hint', id: `${id}-hint` }, hint) : null;
    if (hintEl)
        control.setAttribute('aria-describedby', hintEl.id);
    return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
}

export function select(name, options, value) {
    return h('select', { name },
        options.map(([v, text]) => h('option', { value: v, selected: String(v) === String(value ?? '') },
            text)));
}

/*
 * A list the server pages and filters.  The page's query string holds the
 * filters and the offset, so a reload or a shared link shows the same page.
 *   path: API path ('/vms'); columns: [{label, value: row => node|text}]
 *   filters: [{name, label, type: 'text'|'select'|'datetime-local', options}]
 *   actions: row => [nodes]; limit: rows per page
 * Returns {el, reload}.
 */
export function listView({ path, caption, columns, filters = [], actions, limit = 25, empty,
    rowClass, onData }) {
    const url = new URL(location.href);
    const state = { offset: Number(url.searchParams.get('offset')) || 0 };
    for (const f of filters)
        state[f.name] = url.searchParams.get(f.name) || '';

    const msg = messageBox();
    const tbody = h('tbody');
    const status = h('span', { class: 'pager-status', 'aria-live': 'polite' });
    const prev = h('button', { type: 'button', class: 'btn', onclick: () => go(state.offset - limit) },
        '← Previous');
    const next = h('button', { type: 'button', class: 'btn', onclick: () => go(state.offset + limit) },
        'Next →');
    let nextOffset = null;
    let seq = 0; // only the newest request draws: an older answer arriving late is dropped

    const form = filters.length ? h('form', { class: 'filters', role: 'search', 'aria-label': `Filter ${caption}` },
        filters.map((f) => {
            let c;
            if (f.type === 'select')
                c = select(f.name, [['', f.any || 'Any'], ...f.options], state[f.name]);
            else
                c = h('input', { name: f.name, type: f.type || 'text', value: toInput(f, state[f.name]),
                    placeholder: f.placeholder || '' });
            return field(f.label, c);
        }),
        h('div', { class: 'filter-actions' },
            h('button', { type: 'submit', class: 'btn btn-primary' }, 'Apply'),
            h('button', { type: 'reset', class: 'btn' }, 'Clear'))) : null;
    if (form) {
        form.addEventListener('submit', (e) => {
            e.preventDefault();
            const fd = new FormData(form);
            for (const f of filters)
                state[f.name] = fromInput(f, fd.get(f.name));
            go(0);
        });
        form.addEventListener('reset', () => {
            for (const f of filters)
                state[f.name] = '';
            setTimeout(() => go(0));
        });
    }

    const table = h('table', { class: 'list' },
        h('caption', { class: 'sr-only' }, caption),
        h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.label)),
            actions ? h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')) : null)),
        tbody);
    const el = h('section', { class: 'listview' }, form, msg,
        h('div', { class: 'table-wrap' }, table),
        h('div', { class: 'pager' }, prev, status, next));

    function go(offset) {
        state.offset = Math.max(0, offset);
        const u = new URL(location.href);
        for (const f of filters)
            state[f.name] ? u.searchParams.set(f.name, state[f.name]) : u.searchParams.delete(f.name);
        state.offset ? u.searchParams.set('offset', state.offset) : u.searchParams.delete('offset');
        history.replaceState(history.state, '', u);
        return reload();
    }

    async function reload() {
        const params = { limit, offset: state.offset };
        for (const f of filters)
            params[f.name] = state[f.name];
        el.setAttribute('aria-busy', 'true');
        const mine = ++seq;
        try {
            const page = await api('GET', `${path}${qs(params)}`);
            if (mine !== seq)
                return;
            msg.hide();
            nextOffset = page.next_offset ?? null;
            const rows = page.items || [];
            clear(tbody, rows.length ? rows.map((r) => h('tr', { class: rowClass ? rowClass(r) : '' },
                columns.map((c) => h('td', { dataset: { label: c.label } }, c.value(r))),
                actions ? h('td', { class: 'row-actions' }, actions(r, reload)) : null))
                : h('tr', {}, h('td', { colspan: columns.length + (actions ? 1 : 0), class: 'empty' },
                    empty || 'Nothing here.')));
            status.textContent = rows.length
                ? `Rows ${state.offset + 1}–${state.offset + rows.length}` : '';
            if (onData)
                onData(rows);
        } catch (e) {
            if (mine !== seq)
                return;
            msg.show(errorText(e));
            clear(tbody);
            status.textContent = '';
            nextOffset = null;
        } finally {
            if (mine === seq) {
                el.removeAttribute('aria-busy');
                prev.disabled = state.offset === 0;
                next.disabled = nextOffset === null;
            }
        }
    }
    reload();
    return { el, reload };
}

// datetime-local inputs show local time; the API wants RFC 3339.
function toInput(f, v) {
    if (f.type !== 'datetime-local' || !v)
        return v;
    const d = new Date(v);
    if (Number.isNaN(d.getTime()))
        return '';
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function fromInput(f, v) {
    v = (v || '').trim();
    if (f.type !== 'datetime-local' || !v)
        return v;
    return new Date(v).toISOString();
}

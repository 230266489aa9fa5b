// "My desktops": the pools this person may use, what state their desktop
// is in, and the ways to reach it (browser console, .vv / .rdp file),
// disconnect the viewers left open elsewhere, log off.

import { api, errorText } from './api.js';
import { h, clear, badge, busy, toast, messageBox, confirmDialog, fmtAgo } from './ui.js';

const REFRESH_MS = 10000;

const STATE_WORDS = {
    assigned: 'Ready for you',
    connected: 'In use',
    disconnected: 'Disconnected — your desktop is waiting',
    logging_off: 'Logging off',
};

// Save @text as a file named @name without leaving the page.
function saveFile(name, type, text) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = h('a', { href: url, download: name, class: 'sr-only' }, name);
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function download(d, protocol, button, msg) {
    await busy(button, async () => {
        const res = await api('POST', `/desktops/${d.id}/connect`, { protocol });
        const ext = protocol === 'spice' ? 'vv' : 'rdp';
        const text = protocol === 'spice' ? res.spice.vv : res.rdp.rdp;
        saveFile(`${d.name}.${ext}`, protocol === 'spice' ? 'application/x-virt-viewer' : 'application/x-rdp', text);
        msg.show(`Downloaded ${d.name}.${ext}. Open it within ${res.ticket_ttl_s} seconds: the ticket in it works once.`, 'ok');
    }, msg);
}

function desktopCard(d, reload) {
    const msg = messageBox();
    const s = d.session;
    const protos = d.protocols || [];
    const actions = [];
    if (!d.enabled) {
        actions.push(h('p', { class: 'muted' }, 'This desktop pool is disabled by an administrator.'));
    } else {
        if (protos.includes('browser'))
            actions.push(h('a', { class: 'btn btn-primary', href: `/console/${d.id}`, dataset: { link: '' } },
                'Open in browser'));
        if (protos.includes('rdp')) {
            const b = h('button', { type: 'button', class: 'btn', onclick: () => download(d, 'rdp', b, msg) },
                'Download .rdp');
            actions.push(b);
        }
        if (protos.includes('spice')) {
            const b = h('button', { type: 'button', class: 'btn', onclick: () => download(d, 'spice', b, msg) },
                'Download .vv (SPICE)');
            actions.push(b);
        }
    }
    if (s && s.state === 'connected') {
        // Viewers left open elsewhere (the office PC, another tab) are closed;
        // the desktop keeps running for the pool's disconnect timeout.
        const b = h('button', { type: 'button', class: 'btn', onclick: async () => {
            if (!await confirmDialog(`Disconnect every viewer of ${d.name}? The desktop keeps running; connect again any time.`, 'Disconnect'))
                return;
            await busy(b, async () => {
                await api('POST', `/desktops/${d.id}/disconnect`);
                toast(`Disconnected from ${d.name}; your desktop keeps running.`, 'ok');
                reload();
            }, msg);
        } }, 'Disconnect');
        actions.push(b);
    }
    if (s) {
        const b = h('button', { type: 'button', class: 'btn btn-danger', onclick: async () => {
            if (!await confirmDialog(`Log off from ${d.name}? Unsaved work in the desktop is lost.`, 'Log off'))
                return;
            await busy(b, async () => {
                await api('POST', `/desktops/${d.id}/logoff`);
                toast(`Logged off from ${d.name}.`, 'ok');
                reload();
            }, msg);
        } }, 'Log off');
        actions.push(b);
    }
    return h('article', { class: 'card desktop', 'aria-labelledby': `d${d.id}` },
        h('div', { class: 'desktop-head' },
            h('h2', { id: `d${d.id}` }, d.name),
            s ? badge(s.state) : h('span', { class: 'badge badge-plain' }, d.enabled ? 'available' : 'disabled')),
        d.description ? h('p', {}, d.description) : null,
        h('p', { class: 'muted small' }, s
            ? `${STATE_WORDS[s.state] || s.state}${s.vm_name ? ` · ${s.vm_name}` : ''} · since ${fmtAgo(s.connected_at || s.started_at)}${s.protocol ? ` · ${s.protocol}` : ''}`
            : `${d.assignment === 'dedicated' ? 'Your own desktop' : 'A fresh desktop each time'} · ${protos.join(', ')}`),
        h('div', { class: 'actions' }, actions), msg);
}

export function renderDesktops(main) {
    const list = h('div', { class: 'cards', 'aria-live': 'polite' });
    const msg = messageBox();
    let timer = null;
    let stopped = false;

    async function reload() {
        clearTimeout(timer);
        try {
            const res = await api('GET', '/desktops');
            msg.hide();
            const items = res.items || [];
            clear(list, items.length ? items.map((d) => desktopCard(d, reload))
                : h('p', { class: 'empty' }, 'No desktops are assigned to you yet. Ask your administrator.'));
        } catch (e) {
            msg.show(errorText(e));
        }
        if (!stopped)
            timer = setTimeout(reload, REFRESH_MS);
    }

    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'My desktops'),
        h('button', { type: 'button', class: 'btn', onclick: reload }, 'Refresh')), msg, list,
    h('p', { class: 'muted small footer-links' }, h('a', { href: '/enrol', dataset: { link: '' } },
        'Set up two-step log-in (authenticator app)')));
    reload();
    return () => {
        stopped = true;
        clearTimeout(timer);
    };
}

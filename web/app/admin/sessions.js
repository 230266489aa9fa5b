// Sessions: who is on which desktop, since when, over what; disconnect a
// session (its viewers go, the desktop stays), log it off, or watch it
// view-only (shadow: admins only; the person's viewer stays on and nothing
// typed here reaches the desktop, displayd drops a shadow's input).

import RFB from '../../vendor/novnc/core/rfb.js';
import { api } from '../api.js';
import { h, badge, busy, confirmDialog, fmtAgo, fmtTime, listView, modal, toast } from '../ui.js';
import { session } from '../main.js';

// A view-only console of session @s in a dialog, through a one-time
// view-only ticket from POST /sessions/{id}/shadow.
async function shadow(s, button) {
    const res = await busy(button, () => api('POST', `/sessions/${s.id}/shadow`, { protocol: 'browser' }));
    if (!res)
        return;
    const screen = h('div', { class: 'console-screen shadow-screen', 'aria-label': `Desktop of ${s.username}, view only` });
    // a dialog is no flex box: give the screen a height (through the CSSOM,
    // which the page's Content-Security-Policy allows, unlike style attributes)
    screen.style.height = '60vh';
    screen.style.width = '100%';
    const status = h('p', { class: 'muted small', role: 'status', 'aria-live': 'polite' }, 'Connecting…');
    let rfb = null;
    const dlg = modal(`Watching ${s.username} (session #${s.id}) — view only`, h('div', {}, status, screen));
    dlg.dialog.style.width = 'min(92vw, 1000px)';
    dlg.dialog.style.maxWidth = '92vw';
    const stop = () => {
        if (rfb) {
            const r = rfb;
            rfb = null;
            r.disconnect();
        }
    };
    dlg.dialog.addEventListener('close', stop);
    try {
        rfb = new RFB(screen, res.browser.websocket_url, { shared: true });
    } catch (e) {
        status.textContent = `The console cannot start: ${e.message}`;
        return;
    }
    rfb.viewOnly = true;
    rfb.scaleViewport = true;
    rfb.resizeSession = false;
    rfb.background = '#111';
    rfb.addEventListener('connect', () => {
        status.textContent = `Watching ${s.username}'s desktop. Nothing you type reaches it.`;
    });
    rfb.addEventListener('disconnect', () => {
        rfb = null;
        status.textContent = 'The view ended (the session was disconnected, logged off, or the gateway closed it).';
    });
}

export function renderSessions(main) {
    const list = listView({
        path: '/sessions',
        caption: 'Desktop sessions',
        empty: 'No sessions match.',
        filters: [
            { name: 'state', label: 'State', type: 'select',
                options: ['assigned', 'connected', 'disconnected', 'logging_off', 'ended'].map((s) => [s, s.replace('_', ' ')]) },
            { name: 'user', label: 'User id', type: 'number', placeholder: 'any' },
            { name: 'pool', label: 'Pool id', type: 'number', placeholder: 'any' },
        ],
        columns: [
            { label: 'User', value: (s) => h('strong', {}, s.username) },
            { label: 'State', value: (s) => h('span', {}, badge(s.state), s.end_reason ? h('div', { class: 'muted small' }, s.end_reason) : null) },
            { label: 'Pool / VM', value: (s) => `#${s.pool_id} / ${s.vm_id ? `#${s.vm_id}` : '—'}` },
            { label: 'Protocol', value: (s) => s.protocol || '—' },
            { label: 'Client', value: (s) => [s.client_addr, s.client_name].filter(Boolean).join(' ') || '—' },
            { label: 'Started', value: (s) => h('span', { title: fmtTime(s.started_at) }, fmtAgo(s.started_at)) },
            { label: 'Connected', value: (s) => (s.connected_at ? h('span', { title: fmtTime(s.connected_at) }, fmtAgo(s.connected_at)) : '—') },
            { label: 'Shadowed', value: (s) => (s.shadowed
                ? h('span', { class: 'badge badge-busy', title: s.shadowed_at ? `since ${fmtTime(s.shadowed_at)}` : '' }, `by ${s.shadowed_by || '?'}`)
                : '—') },
        ],
        actions: (s, reload) => (s.state === 'ended' || s.state === 'logging_off' ? [] : [
            s.state === 'connected' || s.state === 'assigned' ? h('button', { type: 'button', class: 'btn', onclick: async (e) => {
                if (!await confirmDialog(`Disconnect ${s.username} from session #${s.id}? Their viewers close; the desktop keeps running until the pool's disconnect timeout.`, 'Disconnect'))
                    return;
                await busy(e.target, async () => {
                    await api('POST', `/sessions/${s.id}/disconnect`);
                    toast(`Session #${s.id} of ${s.username} is disconnected.`, 'ok');
                    reload();
                });
            } }, 'Disconnect') : null,
            session.user && session.user.role === 'admin' && s.vm_id ? h('button', { type: 'button', class: 'btn',
                title: 'Watch this desktop without taking it over; your input is not sent',
                onclick: (e) => shadow(s, e.target) }, 'Shadow') : null,
            h('button', { type: 'button', class: 'btn btn-danger', onclick: async (e) => {
                if (!await confirmDialog(`Log ${s.username} off session #${s.id}? Unsaved work in the desktop is lost.`, 'Log off'))
                    return;
                await busy(e.target, async () => {
                    await api('POST', `/sessions/${s.id}/logoff`);
                    toast(`Session #${s.id} of ${s.username} is logging off.`, 'ok');
                    reload();
                });
            } }, 'Log off'),
        ]),
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Sessions'),
        h('button', { type: 'button', class: 'btn', onclick: () => list.reload() }, 'Refresh')), list.el);
}

// Sessions: who is on which desktop, since when, over what; log a session off.

import { api } from '../api.js';
import { h, badge, busy, confirmDialog, fmtAgo, fmtTime, listView, toast } from '../ui.js';

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
        ],
        actions: (s, reload) => (s.state === 'ended' || s.state === 'logging_off' ? [] : [
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

// The audit log, filtered on the server by action, actor, outcome and time.

import { h, badge, fmtTime, listView } from '../ui.js';

export function renderAudit(main) {
    const list = listView({
        path: '/audit',
        caption: 'Audit log',
        limit: 50,
        empty: 'No audit entries match these filters.',
        filters: [
            { name: 'action', label: 'Action', placeholder: 'e.g. pool.create' },
            { name: 'actor', label: 'Actor', placeholder: 'user name' },
            { name: 'outcome', label: 'Outcome', type: 'select',
                options: [['success', 'success'], ['failure', 'failure'], ['denied', 'denied']] },
            { name: 'since', label: 'From', type: 'datetime-local' },
            { name: 'until', label: 'Until', type: 'datetime-local' },
        ],
        rowClass: (a) => (a.outcome !== 'success' ? 'row-bad' : ''),
        columns: [
            { label: 'When', value: (a) => fmtTime(a.at) },
            { label: 'Actor', value: (a) => h('span', {}, a.actor || '—', a.client_addr ? h('div', { class: 'muted small' }, a.client_addr) : null) },
            { label: 'Action', value: (a) => h('strong', {}, a.action) },
            { label: 'Target', value: (a) => (a.target_type ? `${a.target_type} ${a.target_id ?? ''}` : '—') },
            { label: 'Outcome', value: (a) => badge(a.outcome) },
            { label: 'Detail', value: (a) => (a.detail && Object.keys(a.detail).length
                ? h('span', { class: 'detail' }, JSON.stringify(a.detail)) : '') },
        ],
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Audit log')), list.el);
}

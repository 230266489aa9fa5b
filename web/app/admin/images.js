// Golden images and their versions, and which pools use each version.
// Images are imported on a host with `atriumctl image import` (the broker
// has no upload route yet, so there is no upload form here).

import { api, qs, errorText } from '../api.js';
import { h, badge, fmtAgo, listView } from '../ui.js';

function size(bytes) {
    if (!bytes)
        return '—';
    const g = bytes / 2 ** 30;
    return g >= 1 ? `${g.toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

export function renderImages(main) {
    let usedBy = new Map(); // image_version_id -> [pool names]
    const note = h('p', { class: 'msg msg-info' }, 'Import an image on a host with ',
        h('code', {}, 'atriumctl image import'),
        '; uploads from the browser need a broker route that does not exist yet. Push a version to a pool from the Pools page.');
    const list = listView({
        path: '/images',
        caption: 'Golden images',
        empty: 'No images yet. Import one with atriumctl image import.',
        columns: [
            { label: 'Image', value: (i) => h('span', {}, h('strong', {}, i.name), ` #${i.id}`,
                i.description ? h('div', { class: 'muted small' }, i.description) : null) },
            { label: 'OS', value: (i) => i.os_type || '—' },
            { label: 'Versions', value: (i) => (i.versions && i.versions.length ? h('ul', { class: 'versions' },
                i.versions.map((v) => h('li', {}, h('strong', {}, `v${v.version}`), ` (id ${v.id}) `, badge(v.state),
                    ` ${size(v.size_bytes)} `, h('span', { class: 'muted small' }, fmtAgo(v.created_at)),
                    v.error ? h('div', { class: 'detail' }, v.error) : null,
                    usedBy.has(v.id) ? h('div', { class: 'small' }, `used by ${usedBy.get(v.id).join(', ')}`) : null)))
                : 'none') },
        ],
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Images')), note, list.el);
    // Which pools use which version: one page of pools is read for it.
    api('GET', `/pools${qs({ limit: 500 })}`).then((page) => {
        usedBy = new Map();
        for (const p of page.items)
            if (p.image_version_id)
                usedBy.set(p.image_version_id, [...(usedBy.get(p.image_version_id) || []), p.name]);
        list.reload();
    }).catch((e) => note.after(h('p', { class: 'msg msg-error', role: 'alert' }, errorText(e))));
}

// Golden images and their versions, and which pools use each version.
// Admins upload a disk (qcow2 or raw) from here: the file goes as the raw
// body of POST /images/versions with a progress bar fed by the upload's
// progress events, can be cancelled (the broker keeps nothing of a cut
// upload), and the new version appears in the list without a reload.

import { api, qs, errorText, uploadFile } from '../api.js';
import { h, badge, fmtAgo, listView, modal, messageBox, field, toast } from '../ui.js';
import { session } from '../main.js';

const NAME_PATTERN = '[A-Za-z0-9][A-Za-z0-9._\\-]{0,127}';

function size(bytes) {
    if (!bytes)
        return '—';
    const g = bytes / 2 ** 30;
    return g >= 1 ? `${g.toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

function mib(bytes) {
    return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

// An image name from a file name: "Win 11 (v2).qcow2" -> "Win-11-v2".
function nameFromFile(file) {
    return file.name.replace(/\.[A-Za-z0-9]{1,8}$/, '').replace(/[^A-Za-z0-9._-]+/g, '-')
        .replace(/^[._-]+|-+$/g, '').slice(0, 128);
}

// The upload dialog; @names: existing image names offered in a list;
// onUploaded(version) runs after a version was made.
function uploadDialog(names, onUploaded) {
    const msg = messageBox();
    const file = h('input', { type: 'file', name: 'file', required: true, accept: '.qcow2,.img,.raw' });
    const name = h('input', { name: 'name', required: true, pattern: NAME_PATTERN, maxlength: 128,
        list: 'image-names', autocomplete: 'off' });
    const notes = h('input', { name: 'notes', maxlength: 255 });
    const bar = h('progress', { max: 100, value: 0, 'aria-label': 'upload progress' });
    const barText = h('span', { class: 'upload-text', 'aria-live': 'polite' });
    const progress = h('div', { class: 'upload-progress', hidden: true }, bar, ' ', barText);
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Upload');
    const cancel = h('button', { type: 'button', class: 'btn', disabled: true }, 'Cancel upload');
    let current = null; // the running upload: {abort}

    file.addEventListener('change', () => {
        if (file.files[0] && !name.value)
            name.value = nameFromFile(file.files[0]);
    });
    const form = h('form', {},
        field('Disk image (qcow2 or raw)', file),
        field('Image name', name, 'A new version of this image; the image is created when it does not exist yet.'),
        h('datalist', { id: 'image-names' }, names.map((n) => h('option', { value: n }))),
        field('Notes (optional)', notes),
        progress, msg,
        h('div', { class: 'actions' }, submit, cancel));

    cancel.addEventListener('click', () => {
        if (current)
            current.abort();
    });
    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const f = file.files[0];
        if (!f) {
            msg.show('Choose a disk image file first.');
            return;
        }
        if (!new RegExp(`^${NAME_PATTERN}$`).test(name.value)) {
            msg.show('The image name must be 1 to 128 of A-Z a-z 0-9 . _ - and start with a letter or digit.');
            name.focus();
            return;
        }
        msg.hide();
        submit.disabled = true;
        file.disabled = name.disabled = notes.disabled = true;
        cancel.disabled = false;
        progress.hidden = false;
        bar.value = 0;
        const started = performance.now();
        barText.textContent = `0 % of ${mib(f.size)}`;
        current = uploadFile(`/images/versions${qs({ name: name.value, notes: notes.value })}`, f,
            (sent, total) => {
                const pct = total ? Math.floor((sent * 100) / total) : 0;
                bar.value = pct;
                const secs = (performance.now() - started) / 1000;
                const rate = secs > 0 ? ` at ${(sent / 2 ** 20 / secs).toFixed(1)} MiB/s` : '';
                barText.textContent = pct >= 100
                    ? `100 % of ${mib(total)} sent; the broker is converting and checking it…`
                    : `${pct} % of ${mib(total)}${rate}`;
            });
        try {
            const v = await current.done;
            bar.value = 100;
            barText.textContent = `100 % of ${mib(f.size)}`;
            msg.show(`${v.image} version ${v.version} is ready (${v.source_format}, ${size(v.size_bytes)} stored, sha256 ${v.sha256.slice(0, 16)}…).`, 'ok');
            toast(`Uploaded ${v.image} version ${v.version}`, 'ok');
            onUploaded(v);
        } catch (err) {
            bar.value = 0;
            progress.hidden = true;
            msg.show(err.code === 'aborted' ? 'Upload cancelled; the broker kept nothing of it.' : errorText(err),
                err.code === 'aborted' ? 'info' : 'error');
        } finally {
            current = null;
            submit.disabled = false;
            file.disabled = name.disabled = notes.disabled = false;
            cancel.disabled = true;
        }
    });
    const dlg = modal('Upload a golden image', form);
    // Closing the dialog (Esc or ✕) while a file is on its way cancels it.
    dlg.dialog.addEventListener('close', () => current && current.abort());
    file.focus();
    return dlg;
}

export function renderImages(main) {
    let usedBy = new Map(); // image_version_id -> [pool names]
    let names = [];
    const note = h('p', { class: 'msg msg-info' }, 'Upload a disk here, or import one on a host with ',
        h('code', {}, 'atriumctl image import'), '. Push a version to a pool from the Pools page.');
    const list = listView({
        path: '/images',
        caption: 'Golden images',
        empty: 'No images yet. Upload one, or import one with atriumctl image import.',
        onData: (rows) => {
            names = rows.map((i) => i.name);
        },
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
    const head = h('div', { class: 'page-head' }, h('h1', {}, 'Images'));
    if (session.user && session.user.role === 'admin')
        head.append(h('button', { type: 'button', class: 'btn btn-primary',
            onclick: () => uploadDialog(names, () => list.reload()) }, 'Upload image'));
    main.append(head, note, list.el);
    // Which pools use which version: one page of pools is read for it.
    api('GET', `/pools${qs({ limit: 500 })}`).then((page) => {
        usedBy = new Map();
        for (const p of page.items)
            if (p.image_version_id)
                usedBy.set(p.image_version_id, [...(usedBy.get(p.image_version_id) || []), p.name]);
        list.reload();
    }).catch((e) => note.after(h('p', { class: 'msg msg-error', role: 'alert' }, errorText(e))));
}

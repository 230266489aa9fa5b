// Groups: list, create (local, or mirroring a Unix group), add and remove
// members (a Unix group's members come from the system at each log-in, so
// they are shown, not changed).  Entitle a group to a pool from the Pools page.

import { api, errorText, qs } from '../api.js';
import { h, busy, confirmDialog, field, listView, messageBox, modal, select, toast } from '../ui.js';

function groupForm(onDone) {
    const msg = messageBox();
    const btn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Create group');
    const form = h('form', {}, h('div', { class: 'grid-form' },
        field('Name', h('input', { name: 'name', required: true, maxlength: 128, autocomplete: 'off' })),
        field('Description', h('input', { name: 'description', maxlength: 1024 })),
        field('Source', select('source', [['local', 'Local (members added here)'], ['unix', 'Unix group (members from the system)']], 'local'))),
    msg, h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const fd = new FormData(form);
        const body = { name: String(fd.get('name')).trim(), description: String(fd.get('description')), source: fd.get('source') };
        if (!body.name) {
            msg.show('A group needs a name.');
            return;
        }
        await busy(btn, async () => {
            await api('POST', '/groups', body);
            toast(`Group ${body.name} created.`, 'ok');
            onDone();
        }, msg);
    });
    return form;
}

async function addMember(g, reload) {
    const msg = messageBox();
    const btn = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Add');
    let users = [];
    try {
        users = (await api('GET', `/users${qs({ limit: 500 })}`)).items;
    } catch (e) {
        toast(String(e.message), 'error');
        return;
    }
    const form = h('form', {}, field('User', select('user_id', [['', 'Choose…'], ...users.map((u) => [u.id, u.username])], '')),
        msg, h('div', { class: 'actions' }, btn));
    const dlg = modal(`Add a member to ${g.name}`, form);
    form.querySelector('select').focus();
    form.addEventListener('submit', async (e) => {
        e.preventDefault();
        const id = Number(new FormData(form).get('user_id'));
        if (!id) {
            msg.show('Choose a user.');
            return;
        }
        await busy(btn, async () => {
            await api('POST', `/groups/${g.id}/members`, { user_id: id });
            toast(`Added to ${g.name}.`, 'ok');
            dlg.close();
            reload();
        }, msg);
    });
}

async function showMembers(g, reload) {
    let members = [];
    try {
        members = (await api('GET', `/groups/${g.id}/members${qs({ limit: 500 })}`)).items;
    } catch (e) {
        toast(errorText(e), 'error');
        return;
    }
    const local = g.source === 'local';
    const list = members.length ? h('ul', { class: 'entitled' }, members.map((u) => {
        const li = h('li', {}, u.username, u.display_name ? h('span', { class: 'muted' }, ` (${u.display_name})`) : null);
        if (local)
            li.append(' ', h('button', { type: 'button', class: 'btn btn-quiet btn-small',
                'aria-label': `Remove ${u.username} from ${g.name}`,
                onclick: async (e) => {
                    if (!await confirmDialog(`Remove ${u.username} from ${g.name}? They lose the desktops the group is entitled to.`, 'Remove'))
                        return;
                    await busy(e.target, async () => {
                        await api('DELETE', `/groups/${g.id}/members/${u.id}`);
                        li.remove();
                        toast(`${u.username} removed from ${g.name}.`, 'ok');
                        reload();
                    });
                } }, 'Remove'));
        return li;
    })) : h('p', { class: 'muted' }, 'No members.');
    modal(`Members of ${g.name}`, h('div', {}, list,
        local ? null : h('p', { class: 'muted small' }, 'A Unix group: its members come from the system at each log-in.')));
}

export function renderGroups(main) {
    let list;
    const create = h('button', { type: 'button', class: 'btn btn-primary', onclick: () => {
        const dlg = modal('New group', groupForm(() => {
            dlg.close();
            list.reload();
        }));
        dlg.dialog.querySelector('input').focus();
    } }, 'New group');
    list = listView({
        path: '/groups',
        caption: 'Groups',
        empty: 'No groups yet.',
        columns: [
            { label: 'Group', value: (g) => h('span', {}, h('strong', {}, g.name), ` #${g.id}`,
                g.description ? h('div', { class: 'muted small' }, g.description) : null) },
            { label: 'Source', value: (g) => g.source },
            { label: 'Members', value: (g) => String(g.members) },
        ],
        actions: (g, reload) => [
            h('button', { type: 'button', class: 'btn', onclick: () => showMembers(g, reload) }, 'Members'),
            g.source === 'local'
                ? h('button', { type: 'button', class: 'btn', onclick: () => addMember(g, reload) }, 'Add member') : null,
        ],
    });
    main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Groups'), create),
        h('p', { class: 'muted' }, 'Give a group desktops with “Entitle” on the Pools page.'), list.el);
}

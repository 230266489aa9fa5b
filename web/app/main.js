// The page shell: who is logged in, the navigation, and client-side routes.
// The broker answers every page route with index.html, so a reload or a
// bookmarked /admin/pools lands here and this file draws the right page.

import { api, setCsrf, setUnauthenticatedHandler, setEnrolHandler, errorText, hasCsrf } from './api.js';
import { h, clear, toast } from './ui.js';

const ADMIN_LINKS = [
    ['/admin', 'Dashboard'],
    ['/admin/hosts', 'Hosts'],
    ['/admin/pools', 'Pools'],
    ['/admin/images', 'Images'],
    ['/admin/vms', 'VMs'],
    ['/admin/sessions', 'Sessions'],
    ['/admin/users', 'Users'],
    ['/admin/groups', 'Groups'],
    ['/admin/tasks', 'Tasks'],
    ['/admin/audit', 'Audit log'],
];

// path pattern -> module and export that draws it
const ROUTES = [
    [/^\/login$/, () => import('./login.js'), 'renderLogin', { public: true }],
    [/^\/enrol$/, () => import('./enrol.js'), 'renderEnrol', { enrol: true }],
    [/^\/(desktops)?$/, () => import('./portal.js'), 'renderDesktops'],
    [/^\/console\/(\d+)$/, () => import('./console.js'), 'renderConsole', { bare: true }],
    [/^\/admin$/, () => import('./admin/dashboard.js'), 'renderDashboard', { admin: true }],
    [/^\/admin\/hosts$/, () => import('./admin/hosts.js'), 'renderHosts', { admin: true }],
    [/^\/admin\/pools$/, () => import('./admin/pools.js'), 'renderPools', { admin: true }],
    [/^\/admin\/images$/, () => import('./admin/images.js'), 'renderImages', { admin: true }],
    [/^\/admin\/vms$/, () => import('./admin/vms.js'), 'renderVms', { admin: true }],
    [/^\/admin\/sessions$/, () => import('./admin/sessions.js'), 'renderSessions', { admin: true }],
    [/^\/admin\/users$/, () => import('./admin/users.js'), 'renderUsers', { admin: true }],
    [/^\/admin\/groups$/, () => import('./admin/groups.js'), 'renderGroups', { admin: true }],
    [/^\/admin\/tasks$/, () => import('./admin/tasks.js'), 'renderTasks', { admin: true }],
    [/^\/admin\/audit$/, () => import('./admin/audit.js'), 'renderAudit', { admin: true }],
];

// enrolOnly: the password was right, but the role requires TOTP and none is
// enrolled yet; the broker allows nothing but enrolment until it is.
export const session = { user: null, enrolOnly: false };
let cleanup = null; // the current page's stop function (timers, connections)

export function isStaff(user) {
    return !!user && (user.role === 'admin' || user.role === 'operator');
}

export function navigate(path, { replace = false } = {}) {
    if (replace)
        history.replaceState({}, '', path);
    else
        history.pushState({}, '', path);
    route();
}

function drawShell(opts) {
    const top = document.getElementById('topbar');
    const side = document.getElementById('sidenav');
    const layout = document.getElementById('layout');
    const user = session.user;
    const bare = !user || !!opts.bare || session.enrolOnly;
    top.hidden = bare;
    layout.classList.toggle('bare', bare);
    side.hidden = bare || !opts.admin;
    layout.classList.toggle('no-side', side.hidden);
    if (bare)
        return;
    document.getElementById('who-name').textContent = `${user.username} (${user.role})`;
    const here = location.pathname;
    const link = (href, text) => h('a', { href, dataset: { link: '' },
        'aria-current': here === href || (href !== '/admin' && href !== '/' && here.startsWith(href)) ? 'page' : null },
    text);
    clear(document.getElementById('topnav'), link('/desktops', 'My desktops'),
        isStaff(user) ? link('/admin', 'Admin') : null);
    if (opts.admin) {
        clear(side, h('ul', {}, ADMIN_LINKS.map(([href, text]) => h('li', {}, link(href, text)))));
        // on a phone the menu is one scrolling row: keep the current page in sight
        const cur = side.querySelector('[aria-current="page"]');
        if (cur)
            side.scrollLeft = Math.max(0, cur.offsetLeft - 16);
    }
}

async function loadMe() {
    // Without this tab's CSRF token (a new tab) the session could read but
    // not act: ask for the password again instead of failing later.
    if (!hasCsrf()) {
        session.user = null;
        return;
    }
    try {
        session.user = await api('GET', '/me');
    } catch (e) {
        session.user = null;
        if (e.code === 'totp_enrollment_required') {
            session.enrolOnly = true;
            return;
        }
        if (e.status !== 401)
            throw e;
    }
}

let routing = 0;
async function route() {
    const seq = ++routing;
    if (cleanup) {
        try {
            cleanup();
        } catch (e) { /* the old page is gone either way */ }
        cleanup = null;
    }
    const path = location.pathname;
    const found = ROUTES.find(([re]) => re.test(path));
    const main = document.getElementById('main');
    if (!found) {
        drawShell({});
        clear(main, h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '/', dataset: { link: '' } },
            'Go to my desktops')));
        return;
    }
    const [re, load, name, opts = {}] = found;
    if (session.enrolOnly && !opts.enrol) {
        navigate('/enrol', { replace: true });
        return;
    }
    if (!opts.public && !session.user && !session.enrolOnly) {
        const back = path + location.search;
        navigate(`/login${back && back !== '/' ? `?next=${encodeURIComponent(back)}` : ''}`, { replace: true });
        return;
    }
    if (opts.public && session.user) {
        navigate(isStaff(session.user) ? '/admin' : '/desktops', { replace: true });
        return;
    }
    if (opts.admin && !isStaff(session.user)) {
        drawShell({});
        clear(main, h('h1', {}, 'Not allowed'),
            h('p', {}, 'The admin console is for administrators and operators.'));
        return;
    }
    drawShell(opts);
    let mod;
    try {
        mod = await load();
    } catch (e) {
        clear(main, h('p', { class: 'msg msg-error', role: 'alert' }, 'This page could not be loaded.'));
        return;
    }
    if (seq !== routing)
        return;
    clear(main);
    cleanup = (await mod[name](main, ...(re.exec(path).slice(1)))) || null;
    const heading = main.querySelector('h1');
    if (heading) {
        heading.tabIndex = -1;
        document.title = `${heading.textContent} · Atrium`;
    }
    (heading || main).focus({ preventScroll: true });
}

export function loggedIn(user, csrf, enrolOnly) {
    session.user = user;
    session.enrolOnly = !!enrolOnly;
    setCsrf(csrf);
}

// TOTP enrolment finished: the session is a full one now.
export async function enrolled() {
    session.enrolOnly = false;
    await loadMe();
    navigate(isStaff(session.user) ? '/admin' : '/desktops', { replace: true });
}

export async function logout() {
    try {
        await api('POST', '/logout');
    } catch (e) {
        if (e.status !== 401)
            toast(errorText(e), 'error');
    }
    session.user = null;
    session.enrolOnly = false;
    setCsrf(null);
    navigate('/login');
}

async function start() {
    setUnauthenticatedHandler(() => {
        if (!session.user)
            return;
        session.user = null;
        setCsrf(null);
        toast('Your session has ended. Please log in again.', 'error');
        navigate(`/login?next=${encodeURIComponent(location.pathname)}`, { replace: true });
    });
    setEnrolHandler(() => {
        if (session.enrolOnly)
            return;
        session.enrolOnly = true;
        navigate('/enrol', { replace: true });
    });
    document.addEventListener('click', (e) => {
        const a = e.target.closest('a[data-link]');
        if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey)
            return;
        e.preventDefault();
        if (a.getAttribute('href') !== location.pathname + location.search)
            navigate(a.getAttribute('href'));
    });
    window.addEventListener('popstate', route);
    document.getElementById('logout').addEventListener('click', logout);
    try {
        await loadMe();
    } catch (e) {
        clear(document.getElementById('main'), h('p', { class: 'msg msg-error', role: 'alert' }, errorText(e)));
        return;
    }
    route();
}

start();

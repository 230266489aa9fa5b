// The whole site driven from the web console (run by test-site.sh, with real
// hostd, poold, displayd and broker): create a pool and entitle a user from
// the pages, watch the dashboard until the spare is ready, open the desktop
// in the browser and type into it, push an image version and watch the
// spares move to it, log the user's session off.
//
// usage: node site.test.mjs PATH/TO/playwright-core/index.mjs   (env from test-site.sh)

import { readFileSync } from 'node:fs';
import { check, fail, finish, ok, sleep } from './check.mjs';

const { chromium } = await import(process.argv[2]);
const env = process.env;
const base = env.ATRIUM_WEB_BASE;
const shots = env.ATRIUM_WEB_SHOTS;

const t0 = Date.now();
const secs = () => Math.round((Date.now() - t0) / 1000);

async function waitFor(what, fn, ms) {
    const end = Date.now() + ms;
    let last;
    while (Date.now() < end) {
        try {
            last = await fn();
            if (last)
                return last;
        } catch (e) {
            last = e.message;
        }
        await sleep(1000);
    }
    throw new Error(`${what}: not within ${ms / 1000} s (${JSON.stringify(last)})`);
}

function serial(vmId) {
    try {
        return readFileSync(`${env.ATRIUM_WEB_RUN}/vms/${vmId}/serial.log`, 'utf8');
    } catch (e) {
        return '';
    }
}

const browser = await chromium.launch({
    executablePath: env.ATRIUM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run',
        '--disable-component-update', '--disable-sync'],
});
const problems = [];
async function newPage() {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    return page;
}
async function login(page, user, pw) {
    await page.goto(`${base}/`);
    await page.getByLabel('User name').fill(user);
    await page.getByLabel('Password').fill(pw);
    await page.getByRole('button', { name: 'Log in' }).click();
}
const api = (page, path) => page.evaluate(async (p) => (await (await fetch(`/api/v1${p}`)).json()), path);
const nav = (page, name) => page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name, exact: true }).click();

try {
    const admin = await newPage();
    await login(admin, 'alice', 'correct horse');
    await admin.getByRole('heading', { name: 'Dashboard' }).waitFor({ timeout: 10000 });
    await admin.locator('#hosts-h ~ * td', { hasText: 'web-e2e' }).first().waitFor({ timeout: 30000 });
    ok('the dashboard shows the host hostd registered');

    // A pool from the form: one spare, small TCG guests, browser only.
    await nav(admin, 'Pools');
    await admin.getByRole('button', { name: 'New pool' }).click();
    const d = admin.locator('dialog');
    await d.getByLabel('Name').fill('office');
    await d.getByLabel('Minimum VMs').fill('1');
    await d.getByLabel('Maximum VMs').fill('2');
    await d.getByLabel('Spare (ready) VMs').fill('1');
    await d.getByLabel('vCPUs').fill('1');
    await d.getByLabel('Memory (MiB)').fill('256');
    await d.getByLabel('Image version id').fill(env.ATRIUM_WEB_V1);
    for (const p of ['SPICE (.vv)', 'RDP (.rdp)', 'VNC'])
        await d.getByLabel(p, { exact: true }).uncheck();
    await d.getByRole('button', { name: 'Create pool' }).click();
    await admin.locator('.toast-ok', { hasText: 'Pool office created' }).waitFor({ timeout: 10000 });
    ok('the admin creates a pool from the form');
    const row = admin.locator('table.list tbody tr', { has: admin.locator('strong', { hasText: /^office$/ }) });
    await row.getByRole('button', { name: 'Entitle' }).click();
    const uma = (await api(admin, '/users?role=user')).items.find((u) => u.username === 'uma');
    await admin.locator('dialog').getByLabel('Who').selectOption(`u${uma.id}`);
    await admin.locator('dialog').getByRole('button', { name: 'Entitle' }).click();
    await admin.locator('.toast-ok', { hasText: 'Entitled to office' }).waitFor({ timeout: 10000 });
    ok('the admin entitles uma from the Entitle dialog');

    // The dashboard shows the pool reaching its spare.
    await nav(admin, 'Dashboard');
    const spares = admin.locator('#pools-h ~ * tr', { hasText: 'office' }).locator('td[data-label="Spares"]');
    await waitFor('the spare on the dashboard', async () => /^1 \/ 1/.test((await spares.textContent()) || ''), 300000);
    ok(`the dashboard shows office's spare ready (${secs()} s)`);
    await admin.screenshot({ path: `${shots}/site-dashboard.png`, fullPage: true });

    // uma opens it in the browser and types into it.
    const user = await newPage();
    await login(user, 'uma', 'user pw');
    await user.locator('article.desktop', { hasText: 'office' }).getByRole('link', { name: 'Open in browser' }).click();
    await user.waitForFunction(() => document.querySelector('.console-status')?.textContent === 'Connected', null, { timeout: 60000 });
    ok('uma connects to her desktop in the browser');
    const lit = await waitFor('the guest on the canvas', () => user.evaluate(() => {
        const c = document.querySelector('.console-screen canvas');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4)
            if (px[i] + px[i + 1] + px[i + 2] > 192)
                n++;
        return n > 500 ? n : 0;
    }), 30000);
    ok(`the guest's screen is on the canvas (${lit} lit pixels)`);
    const sess = await waitFor('uma\'s session', async () => (await api(admin, '/sessions')).items
        .find((s) => s.username === 'uma' && s.state !== 'ended'), 20000);
    await user.screenshot({ path: `${shots}/site-console.png` });
    // "ready" is hostd's word for a running QEMU; the guest may still be
    // booting, and keys typed before its prompt are lost.
    await waitFor('the guest booted', () => serial(sess.vm_id).includes('ATRIUM-BOOT-OK'), 120000);
    await user.locator('.console-screen canvas').click();
    await user.keyboard.type('mark fromweb', { delay: 60 });
    await user.keyboard.press('Enter');
    await waitFor('the typed line on the guest serial', () => serial(sess.vm_id).includes('ATRIUM-MARK-WRITTEN: fromweb'), 30000)
        .catch(async (e) => { throw new Error(`${e.message}; console "${await user.locator('.console-status').textContent()}"; serial: ${JSON.stringify(serial(sess.vm_id).slice(-300))}`); });
    ok('what uma types reaches her VM');

    // From a second device uma disconnects the viewer she left open: her
    // console drops, says why, and stays down (reconnecting by itself would
    // undo the disconnect) until she asks for it again.
    const phone = await newPage();
    await login(phone, 'uma', 'user pw');
    const ucard = phone.locator('article.desktop', { hasText: 'office' });
    await ucard.getByRole('button', { name: 'Disconnect' }).click();
    await phone.locator('dialog').getByRole('button', { name: 'Disconnect' }).click();
    await phone.locator('.toast-ok', { hasText: 'Disconnected from office' }).waitFor({ timeout: 10000 });
    await user.waitForFunction(() => document.querySelector('.console-status')?.textContent !== 'Connected', null, { timeout: 15000 });
    ok(`uma disconnects her open console from the portal of another device ("${await user.locator('.console-status').textContent()}")`);
    await user.locator('.console-status', { hasText: 'disconnected from another device' }).waitFor({ timeout: 15000 });
    await user.waitForTimeout(5000);
    const after = await user.locator('.console-status').textContent();
    if (after === 'Connected' || after.startsWith('Reconnecting'))
        throw new Error(`the console reconnected by itself after a requested disconnect ("${after}")`);
    ok('the console stays disconnected 5 s later and says why');
    await user.getByRole('button', { name: 'Reconnect' }).click();
    await user.waitForFunction(() => document.querySelector('.console-status')?.textContent === 'Connected', null, { timeout: 60000 });
    ok('Reconnect brings the desktop back');
    await phone.context().close();

    // Push image version 2: spares move to it.
    await nav(admin, 'Pools');
    await row.getByRole('button', { name: 'Push image' }).click();
    await admin.locator('dialog').getByLabel('Image version', { exact: true }).selectOption(env.ATRIUM_WEB_V2);
    await admin.locator('dialog').getByRole('button', { name: 'Push image' }).click();
    await admin.locator('.toast-ok', { hasText: `image version ${env.ATRIUM_WEB_V2}` }).waitFor({ timeout: 10000 });
    ok('the admin pushes image version 2');
    await waitFor('a ready spare on version 2', async () => (await api(admin, '/vms?state=ready')).items
        .some((v) => String(v.image_version_id) === env.ATRIUM_WEB_V2), 300000);
    ok(`a spare runs version 2 (${secs()} s)`);
    // The dashboard's pool row tells how far the push has got: uma's VM is in
    // use and stays on version 1 until she logs off.
    await nav(admin, 'Dashboard');
    const imgCell = admin.locator('#pools-h ~ * tr', { hasText: 'office' }).locator('td[data-label="Image"]');
    const pushed = await waitFor('the push progress on the dashboard', async () => {
        const pool = (await api(admin, '/pools')).items.find((p) => p.name === 'office');
        const mine = (await api(admin, `/vms?pool=${pool.id}&limit=200`)).items.filter((v) => v.state !== 'deleting');
        const on = mine.filter((v) => v.image_version_id === pool.image_version_id).length;
        const text = (await imgCell.textContent()) || '';
        const bar = await imgCell.locator('progress').count();
        return on < mine.length && bar === 1 && text.includes(`${on} of ${mine.length} on version #${env.ATRIUM_WEB_V2}`) && text;
    }, 30000);
    ok(`the dashboard shows the push's progress with a bar ("${pushed.trim()}")`);
    await nav(admin, 'Tasks');
    await admin.locator('.listview:not([aria-busy])').waitFor({ timeout: 10000 });
    const tasks = (await api(admin, '/tasks?limit=25')).items;
    const bars = await admin.locator('table.list tbody tr progress').count();
    check(bars === tasks.length, `the tasks page shows every task with its progress (${tasks.length}: ${[...new Set(tasks.map((t) => t.kind))].join(', ') || 'none'})`,
        `${bars} progress bars`);
    await admin.screenshot({ path: `${shots}/site-tasks.png`, fullPage: true });

    // The admin logs uma off; her page notices.
    await nav(admin, 'Sessions');
    const srow = admin.locator('table.list tbody tr', { has: admin.getByRole('button', { name: 'Log off' }) })
        .filter({ hasText: 'uma' }).first();
    await srow.getByRole('button', { name: 'Log off' }).click();
    await admin.locator('dialog').getByRole('button', { name: 'Log off' }).click();
    await admin.locator('.toast-ok', { hasText: 'of uma is logging off' }).waitFor({ timeout: 10000 });
    await user.waitForFunction(() => document.querySelector('.console-status')?.textContent === 'Your session was logged off.',
        null, { timeout: 60000 });
    ok('uma\'s console says her session was logged off');
    await sleep(3000);
    const live = (await api(admin, '/sessions')).items.filter((x) => x.username === 'uma' && x.state !== 'ended' && x.state !== 'logging_off');
    check(live.length === 0 && await user.getByRole('button', { name: 'Start a new session' }).isVisible(),
        'it does not start a new session by itself, and offers to', JSON.stringify(live));
    const unexpected = problems.filter((p) => !/WebSocket connection to|Failed when connecting|Connection closed|status of (503|404)/.test(p));
    check(unexpected.length === 0, 'no unexpected console errors or CSP violations', unexpected.join(' | '));
} catch (e) {
    fail('site', e.message.split('\n')[0]);
} finally {
    await browser.close();
}
finish();

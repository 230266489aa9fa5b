// The admin console's session control in chromium (run by
// web-session-control.sh): alice (admin) shadows uma's connected session
// from the Sessions page, disconnects it, removes uma's entitlement on the
// Pools page and her group membership on the Groups page.
//
// usage: node web-session-control.test.mjs PATH/TO/playwright-core/index.mjs

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { check, fail, finish, ok, sleep } from '../web/check.mjs';

const { chromium } = await import(process.argv[2]);
const env = process.env;
const base = env.ATRIUM_WEB_BASE;
const shots = env.ATRIUM_WEB_SHOTS;

const sql = (q) => execFileSync('psql', ['-X', '-q', '-t', '-A', env.ATRIUM_WEB_CONNINFO, '-c', q]).toString().trim();
const serial = () => readFileSync(env.ATRIUM_WEB_SERIAL, 'utf8');
const alive = (pid) => {
    try {
        process.kill(pid, 0);
        return true;
    } catch (e) {
        return false;
    }
};
async function until(fn, ms) {
    const end = Date.now() + ms;
    while (Date.now() < end) {
        if (await fn())
            return true;
        await sleep(100);
    }
    return false;
}

const browser = await chromium.launch({
    executablePath: env.ATRIUM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run',
        '--disable-component-update', '--disable-sync'],
});
const owner = Number(env.ATRIUM_WEB_OWNER_PID);
// (a tab's CSRF token lives in its sessionStorage: every tab logs in)
async function login(p) {
    await p.goto(`${base}/`);
    await p.getByLabel('User name').fill('alice');
    await p.getByLabel('Password').fill('correct horse');
    await p.getByRole('button', { name: 'Log in' }).click();
    await p.getByRole('button', { name: 'Log out' }).waitFor({ timeout: 15000 });
}
try {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await ctx.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));

    await login(page);

    // ---------------------------------------------------------- shadow
    await page.goto(`${base}/admin/sessions`);
    const row = page.locator('tr', { hasText: 'uma' }).first();
    await row.waitFor({ timeout: 15000 });
    check((await row.innerText()).includes('connected'), 'Sessions lists uma connected');
    await row.getByRole('button', { name: 'Shadow' }).click();
    const dlg = page.locator('dialog', { hasText: 'view only' });
    await dlg.waitFor({ timeout: 10000 });
    await dlg.getByText(/Nothing you type reaches it/).waitFor({ timeout: 30000 });
    ok('Shadow opens a view-only console of the session');
    // the picture: the guest's text in the canvas
    const lit = async () => page.evaluate(() => {
        const c = document.querySelector('dialog .console-screen canvas');
        if (!c || !c.width)
            return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
            n += d[i] + d[i + 1] + d[i + 2] > 192 ? 1 : 0;
        return n;
    });
    check(await until(async () => (await lit()) > 500, 30000), 'the shadow console shows the guest\'s screen',
        `${await lit()} lit pixels`);
    await page.screenshot({ path: `${shots}/admin-shadow.png` });
    // keys typed into the shadow never reach the guest
    await dlg.locator('canvas').click();
    await page.keyboard.type('webshadow', { delay: 60 });
    await page.keyboard.press('Enter');
    await sleep(6000);
    check(!serial().includes('webshadow'), 'keys typed into the shadow console never reach the guest');
    check(alive(owner), 'uma\'s own viewer stays connected while the admin watches');
    check(sql(`SELECT state FROM desktop_sessions WHERE user_id = (SELECT id FROM users WHERE username = 'uma')`) === 'connected',
        'the session stays connected');
    // a second tab's Sessions page shows the session shadowed by alice
    // (its own browser context: a log-in replaces the context's cookie,
    // which would leave the first tab's CSRF token behind)
    const ctx2 = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page2 = await ctx2.newPage();
    await login(page2);
    await page2.goto(`${base}/admin/sessions`);
    const row2 = page2.locator('tr', { hasText: 'uma' }).first();
    check(await until(async () => (await row2.innerText()).includes('by alice'), 15000),
        'the Sessions list shows the session shadowed by alice', await row2.innerText());
    await ctx2.close();
    // closing the dialog ends the view: no longer shadowed
    await dlg.getByRole('button', { name: 'Close' }).click();
    check(await until(async () => sql('SELECT count(*) FROM desktop_sessions WHERE shadowed_at IS NOT NULL') === '0', 10000),
        'closing the dialog ends the shadow');
    check(Number(sql("SELECT count(*) FROM audit_log WHERE action = 'session.shadow'")) >= 3,
        'the shadow is audited (ticket, joined, left)');

    // ---------------------------------------------------------- disconnect
    await page.getByRole('button', { name: 'Refresh' }).click();
    await row.getByRole('button', { name: 'Disconnect' }).click();
    await page.locator('dialog').getByRole('button', { name: 'Disconnect' }).click();
    check(await until(() => !alive(owner), 3000), 'Disconnect drops uma\'s viewer within 3 s of the click');
    check(await until(async () => (await row.innerText()).includes('disconnected'), 10000),
        'the list shows the session disconnected');
    check(sql("SELECT v.assigned_user_id = s.user_id FROM desktop_sessions s JOIN vms v ON v.id = s.vm_id") === 't',
        'the desktop stays uma\'s');

    // ---------------------------------------------------------- entitlement remove
    await page.goto(`${base}/admin/pools`);
    const prow = page.locator('tr', { hasText: 'desk' }).first();
    await prow.getByRole('button', { name: 'Entitle' }).click();
    const edlg = page.locator('dialog', { hasText: 'Entitle to desk' });
    await edlg.getByRole('button', { name: 'Remove the entitlement of User: uma' }).click();
    await page.locator('dialog', { hasText: 'Remove User: uma' }).getByRole('button', { name: 'Remove' }).click();
    check(await until(async () => (await edlg.locator('li', { hasText: 'User: uma' }).count()) === 0, 10000),
        'the entitlement disappears from the dialog');
    check(sql(`SELECT count(*) FROM entitlements WHERE pool_id = ${env.ATRIUM_WEB_POOL}`) === '0',
        'and from the database');
    await edlg.getByRole('button', { name: 'Close' }).click();

    // ---------------------------------------------------------- member remove
    await page.goto(`${base}/admin/groups`);
    const grow = page.locator('tr', { hasText: 'staff' }).first();
    await grow.getByRole('button', { name: 'Members' }).click();
    const mdlg = page.locator('dialog', { hasText: 'Members of staff' });
    await mdlg.getByText('uma').waitFor({ timeout: 10000 });
    await mdlg.getByRole('button', { name: 'Remove uma from staff' }).click();
    await page.locator('dialog', { hasText: 'Remove uma from staff?' }).getByRole('button', { name: 'Remove' }).click();
    check(await until(() => sql(`SELECT count(*) FROM memberships WHERE group_id = ${env.ATRIUM_WEB_GROUP}`) === '0', 10000),
        'Members → Remove takes uma out of the group');
    await page.screenshot({ path: `${shots}/admin-group-members.png` });
    check(problems.length === 0, 'no console errors or CSP violations', problems.join(' | '));
} catch (e) {
    fail('session control pages', e.message.split('\n')[0]);
} finally {
    await browser.close();
}
finish();

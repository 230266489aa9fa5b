// Browser checks of the web console, run by test-web.sh against a real
// broker: headers and static serving, the user's portal (wrong password,
// desktops, .rdp download, log off, no way into the admin console), the
// browser console's wiring to the gateway, and the admin console (dashboard,
// pools list, pool form validation and creation, audit filters).  Every
// page load also collects console errors and CSP violations: there must be
// none beyond the HTTP errors a check provokes on purpose.
//
// usage: node web.test.mjs PATH/TO/playwright-core/index.mjs   (env from test-web.sh)

import { request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { check, fail, finish, launchChromium, ok, step, watchedPage } from './check.mjs';

const { chromium } = await import(process.argv[2]);
const base = process.env.ATRIUM_WEB_BASE;
const shots = process.env.ATRIUM_WEB_SHOTS;
const poolId = process.env.ATRIUM_WEB_POOL;
const vncPort = process.env.ATRIUM_WEB_VNC_PORT;


// A raw GET with the path exactly as given (fetch would normalise "..").
function rawGet(path) {
    return new Promise((resolve, reject) => {
        const u = new URL(base);
        const req = httpRequest({ host: u.hostname, port: u.port, path, method: 'GET', timeout: 10000 }, (res) => {
            let body = '';
            res.on('data', (c) => { body += c; });
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
        });
        req.on('error', reject);
        req.end();
    });
}

// RFC 6238 code of a base32 secret for time step @step (SHA-1).
function totp(secretB32, step, digits = 6) {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
    let bits = '';
    for (const ch of secretB32.replace(/=+$/, '').toUpperCase())
        bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
    const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
    const msg = Buffer.alloc(8);
    msg.writeBigUInt64BE(BigInt(step));
    const mac = createHmac('sha1', key).update(msg).digest();
    const off = mac[mac.length - 1] & 0xf;
    const n = (mac.readUInt32BE(off) & 0x7fffffff) % 10 ** digits;
    return String(n).padStart(digits, '0');
}

// ------------------------------------------------------ static serving ---
await step('static serving', async () => {
    const root = await rawGet('/');
    check(root.status === 200 && /text\/html/.test(root.headers['content-type']), '/ is index.html');
    const csp = root.headers['content-security-policy'] || '';
    check(/default-src 'self'/.test(csp) && /script-src 'self'/.test(csp) && /style-src 'self'/.test(csp),
        'CSP allows scripts and styles from the broker only', csp);
    check(!/unsafe-inline|unsafe-eval/.test(csp), 'CSP has no unsafe-inline / unsafe-eval', csp);
    check(/frame-ancestors 'none'/.test(csp), 'CSP forbids framing', csp);
    check(csp.includes(`ws://127.0.0.1:${vncPort}`), 'CSP connect-src names the display gateway WebSocket', csp);
    check(root.headers['x-content-type-options'] === 'nosniff', 'nosniff on web files');
    check(root.headers['referrer-policy'] === 'no-referrer', 'Referrer-Policy no-referrer');
    check(!!root.headers.etag && /no-cache/.test(root.headers['cache-control'] || ''), 'ETag + Cache-Control: no-cache');
    const html = readFileSync(new URL('../../web/index.html', import.meta.url), 'utf8');
    check(!/<script(?![^>]*\bsrc=)[^>]*>/i.test(html) && !/<style/i.test(html) && !/\sstyle=/i.test(html) && !/\son[a-z]+=/i.test(html),
        'index.html has no inline script, style or handler');
    const deep = await rawGet('/admin/pools?offset=0');
    check(deep.status === 200 && deep.body === root.body, 'a page route (/admin/pools) gets index.html');
    const js = await rawGet('/app/main.js');
    check(js.status === 200 && /^text\/javascript/.test(js.headers['content-type']), 'JavaScript has its Content-Type');
    const css = await rawGet('/app/style.css');
    check(css.status === 200 && /^text\/css/.test(css.headers['content-type']), 'CSS has its Content-Type');
    const again = await new Promise((resolve, reject) => {
        const u = new URL(base);
        httpRequest({ host: u.hostname, port: u.port, path: '/app/main.js', headers: { 'If-None-Match': js.headers.etag } },
            (res) => { res.resume(); resolve(res.statusCode); }).on('error', reject).end();
    });
    check(again === 304, 'a matching If-None-Match gets 304', String(again));
    const missing = await rawGet('/app/missing.js');
    check(missing.status === 404 && !/<html/i.test(missing.body), 'a missing asset is a 404, not the page');
    for (const p of ['/../../../etc/passwd', '/%2e%2e/%2e%2e/%2e%2e/etc/passwd', '/app/..%2f..%2f..%2f..%2fetc%2fpasswd',
        '/vendor/../../../../etc/passwd', '/.git/config', '/app/.hidden.js'])
        check(!(await rawGet(p)).body.includes('root:'), `no file outside web_root through ${p}`);
    const api404 = await rawGet('/api/v1/nothing');
    check(api404.status === 404 && /application\/json/.test(api404.headers['content-type']), 'unknown API paths stay JSON 404s');
});

// ------------------------------------------------------------- browser ---
const browser = await launchChromium(chromium);

// A context whose console errors and CSP violations are collected.
// @allowed: statuses of failed loads that the checks provoke on purpose.
function newPage(viewport, allowed = []) {
    return watchedPage(browser, { viewport, acceptDownloads: true }, (t) => {
        const st = /status of (\d+)/.exec(t);
        return !!st && allowed.includes(Number(st[1]));
    });
}

async function login(page, user, password) {
    await page.goto(`${base}/`);
    await page.getByLabel('User name').fill(user);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Log in' }).click();
}

function noProblems(page, name) {
    check(page.problems.length === 0, `${name}: no console errors or CSP violations`, page.problems.join(' | '));
}

// ------------------------------------------------------------ the user ---
await step('portal', async () => {
    const page = await newPage({ width: 1280, height: 800 }, [401]);
    await page.goto(`${base}/`);
    await page.getByRole('heading', { name: 'Log in' }).waitFor({ timeout: 10000 });
    await page.screenshot({ path: `${shots}/login.png` });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: `${shots}/login-phone.png` });
    await page.setViewportSize({ width: 1280, height: 800 });
    await login(page, 'uma', 'not her password');
    const alert = page.locator('.login-form [role=alert]');
    await alert.waitFor({ timeout: 10000 });
    check((await alert.textContent()).includes('Wrong user name, password or code'),
        'a wrong password is shown in words', await alert.textContent());
    check(new URL(page.url()).pathname === '/login', 'a wrong password stays on the log-in page');
    check(await page.evaluate(() => localStorage.length === 0), 'nothing is kept in localStorage');

    await page.getByLabel('Password').fill('user pw');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'My desktops' }).waitFor({ timeout: 10000 });
    check(new URL(page.url()).pathname === '/desktops', 'a user lands on My desktops');
    const card = page.locator('article.desktop', { hasText: 'office' });
    await card.waitFor({ timeout: 10000 });
    ok('the entitled pool is listed');
    check(await card.getByRole('link', { name: 'Open in browser' }).isVisible(), 'Open in browser offered');
    check(await page.evaluate(() => localStorage.length === 0 && !document.cookie.includes('atrium_session')),
        'the session cookie is not readable by scripts, localStorage empty');
    await page.screenshot({ path: `${shots}/portal-desktop.png`, fullPage: true });

    // .rdp download: a connect through the API, saved as a file.
    const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 15000 }),
        card.getByRole('button', { name: 'Download .rdp' }).click()]);
    check(dl.suggestedFilename() === 'office.rdp', 'the .rdp file is named after the pool', dl.suggestedFilename());
    const rdp = readFileSync(await dl.path(), 'utf8');
    check(/full address:s:127\.0\.0\.1/.test(rdp), 'the .rdp file names the gateway', rdp.slice(0, 200));
    await card.locator('.msg-ok').waitFor({ timeout: 5000 });
    ok('the download is confirmed on the page');

    // The session now shows, and can be logged off from the card.
    await page.getByRole('button', { name: 'Refresh' }).click();
    const logoff = card.getByRole('button', { name: 'Log off' });
    await logoff.waitFor({ timeout: 10000 });
    ok('the live session shows on the card');
    await logoff.click();
    await page.locator('dialog').getByRole('button', { name: 'Log off' }).click();
    await page.locator('.toast-ok', { hasText: 'Logged off from office' }).waitFor({ timeout: 10000 });
    ok('log off gives feedback without a reload');

    // Phone-sized screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await page.locator('article.desktop', { hasText: 'office' }).waitFor({ timeout: 10000 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, 'the portal fits a phone-sized screen', `${overflow}px too wide`);
    await page.screenshot({ path: `${shots}/portal-phone.png`, fullPage: true });

    // No way into the admin console.
    await page.goto(`${base}/admin/pools`);
    await page.getByRole('heading', { name: 'Not allowed' }).waitFor({ timeout: 10000 });
    ok('a user gets "Not allowed" on admin pages');
    const st = await page.evaluate(async () => (await fetch('/api/v1/users')).status);
    check(st === 403, 'a user gets 403 from the admin API', String(st));
    page.problems = page.problems.filter((p) => !/status of 403/.test(p));

    // Keyboard: the log-out button is reachable with Tab.
    await page.goto(`${base}/desktops`);
    await page.getByRole('heading', { name: 'My desktops' }).waitFor();
    let reached = false;
    for (let i = 0; i < 12 && !reached; i++) {
        await page.keyboard.press('Tab');
        reached = await page.evaluate(() => document.activeElement && document.activeElement.id === 'logout');
    }
    check(reached, 'Log out is reachable with the keyboard');
    noProblems(page, 'portal');

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('heading', { name: 'Log in' }).waitFor({ timeout: 10000 });
    const me = await page.evaluate(async () => (await fetch('/api/v1/me')).status);
    check(me === 401, 'after log-out the session is gone', String(me));
    await page.context().close();
});

// ---------------------------------------------------- browser console ---
await step('browser console', async () => {
    const page = await newPage({ width: 1280, height: 800 });
    await login(page, 'uma', 'user pw');
    await page.getByRole('heading', { name: 'My desktops' }).waitFor({ timeout: 10000 });
    const ws = page.waitForEvent('websocket', { timeout: 15000 });
    await page.locator('article.desktop', { hasText: 'office' }).getByRole('link', { name: 'Open in browser' }).click();
    const sock = await ws;
    check(new RegExp(`^ws://127\\.0\\.0\\.1:${vncPort}/websockify\\?ticket=[A-Za-z0-9_-]{20,}$`).test(sock.url()),
        'noVNC opens the WebSocket URL the connect API gave, with its ticket', sock.url());
    // Nobody listens on that port here: the page must say so and retry.
    const status = page.locator('.console-status');
    await page.waitForFunction(() => /Reconnecting/.test(document.querySelector('.console-status')?.textContent || ''),
        null, { timeout: 15000 });
    ok(`a dropped console connection is retried: "${await status.textContent()}"`);
    const second = await page.waitForEvent('websocket', { timeout: 15000 });
    check(second.url() !== sock.url(), 'each reconnection uses a new one-time ticket');
    await page.getByRole('button', { name: 'Disconnect' }).click();
    await page.getByRole('heading', { name: 'My desktops' }).waitFor({ timeout: 10000 });
    ok('Disconnect returns to My desktops');
    // The failed WebSocket is logged by chromium and by noVNC; everything else counts.
    page.problems = page.problems.filter((p) => !/WebSocket connection to|Failed when connecting: Connection closed/.test(p));
    noProblems(page, 'console');
    await page.context().close();
});

// ----------------------------------------------------- two-step log-in ---
await step('two-step log-in', async () => {
    // The admin requires two-step log-in for operators on the Users page.
    const adm = await newPage({ width: 1280, height: 800 });
    await login(adm, 'alice', 'correct horse');
    await adm.getByRole('heading', { name: 'Dashboard' }).waitFor({ timeout: 10000 });
    await adm.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Users' }).click();
    const policy = adm.locator('form.policy');
    await policy.getByLabel('operators').check();
    await policy.getByRole('button', { name: 'Save' }).click();
    await adm.locator('.toast-ok', { hasText: 'required for operators' }).waitFor({ timeout: 10000 });
    const pol = await adm.evaluate(async () => (await fetch('/api/v1/policies/totp')).json());
    check(pol.operator === true && pol.admin === false && pol.user === false,
        'the admin requires TOTP for operators from the Users page', JSON.stringify(pol));
    noProblems(adm, 'policy');
    await adm.context().close();

    // otto is an operator.
    const page = await newPage({ width: 1280, height: 800 }, [401, 403]);
    await login(page, 'otto', 'otto pw');
    await page.getByRole('heading', { name: 'Set up two-step log-in' }).waitFor({ timeout: 10000 });
    ok('a role that requires TOTP is sent to enrolment after the password');
    const blocked = await page.evaluate(async () => (await fetch('/api/v1/pools')).status);
    check(blocked === 403, 'an enrolment-only session cannot use the admin API', String(blocked));
    await page.locator('svg.qr path').waitFor({ timeout: 10000 });
    check(await page.locator('svg.qr path').count() === 1, 'the QR code is drawn');
    const uri = new URL(await page.locator('a.otpauth').getAttribute('href'));
    const secret = uri.searchParams.get('secret');
    const period = Number(uri.searchParams.get('period') || 30);
    const digits = Number(uri.searchParams.get('digits') || 6);
    check((await page.locator('code.secret').textContent()).replace(/\s/g, '') === secret,
        'the key is shown as text for typing');
    await page.screenshot({ path: `${shots}/enrol.png`, fullPage: true });
    // The QR code must scan to the same URI (zbarimg, Debian's zbar-tools).
    let zbar = null;
    try {
        execFileSync('zbarimg', ['--version'], { stdio: 'ignore' });
        zbar = 'zbarimg';
    } catch (e) { /* not installed */ }
    if (zbar) {
        await page.locator('svg.qr').screenshot({ path: `${shots}/enrol-qr.png` });
        const scanned = execFileSync(zbar, ['--raw', '-q', `${shots}/enrol-qr.png`], { stdio: ['ignore', 'pipe', 'ignore'] })
            .toString().trim();
        check(scanned === uri.href, 'the QR code scans to the otpauth URI', scanned);
    } else {
        console.log('skip the QR code scan: zbarimg (zbar-tools) is not installed');
    }
    const stepNow = Math.floor(Date.now() / 1000 / period);
    await page.getByLabel('Code from the app').fill(totp(secret, stepNow, digits));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('heading', { name: 'Recovery codes' }).waitFor({ timeout: 10000 });
    const codes = await page.locator('ul.recovery code').count();
    check(codes >= 4, `recovery codes are shown once (${codes})`);
    await page.getByRole('button', { name: /continue/ }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor({ timeout: 10000 });
    ok('after enrolment the operator reaches the console');

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('heading', { name: 'Log in' }).waitFor({ timeout: 10000 });
    await page.getByLabel('User name').fill('otto');
    await page.getByLabel('Password').fill('otto pw');
    await page.getByRole('button', { name: 'Log in' }).click();
    const codeBox = page.getByLabel('Authenticator code');
    await codeBox.waitFor({ timeout: 10000 });
    check(!(await page.getByLabel('Password').isVisible()), 'the code is asked for in a second step');
    await codeBox.fill('000000' === totp(secret, stepNow + 1, digits) ? '111111' : '000000');
    await page.getByRole('button', { name: 'Verify code' }).click();
    await page.waitForFunction(() => /Wrong user name, password or code/.test(
        document.querySelector('.login-form [role=alert]')?.textContent || ''), null, { timeout: 10000 });
    ok('a wrong code is refused in words');
    // The enrolment used this step's code, and replays are refused: the
    // next step's code is inside the broker's window and not used yet.
    await codeBox.fill(totp(secret, stepNow + 1, digits));
    await page.getByRole('button', { name: 'Verify code' }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor({ timeout: 10000 });
    ok('password + current code log in');
    noProblems(page, 'two-step log-in');
    await page.context().close();
});

// ----------------------------------------------------------- the admin ---
await step('admin', async () => {
    const page = await newPage({ width: 1280, height: 800 }, [409]);
    await login(page, 'alice', 'correct horse');
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor({ timeout: 10000 });
    check(new URL(page.url()).pathname === '/admin', 'an admin lands on the dashboard');
    await page.locator('#pools-h ~ * td', { hasText: 'office' }).first().waitFor({ timeout: 10000 });
    ok('the dashboard lists the pool');
    const vmsStat = await page.locator('#vms-h + .stat').textContent();
    check(vmsStat.trim() === '3', 'the dashboard counts the VMs', vmsStat);
    // hv1 is a row without a hostd: its chart must say there are no samples, not draw any.
    const hv1 = page.locator('#host-charts figure[data-kind="host"]', { hasText: 'hv1' });
    await hv1.locator('.chart-note', { hasText: 'No samples in the last 15 minutes' }).waitFor({ timeout: 10000 });
    check(await hv1.locator('path').count() === 0 && await page.getByText('No VM is running.').isVisible(),
        'a host without samples gets an empty chart that says so, and no VM chart is made up');
    await page.screenshot({ path: `${shots}/admin-dashboard.png`, fullPage: true });

    // Keyboard only: Tab to the Pools menu entry, Enter, the page's heading
    // takes the focus; Tab to New pool, Enter opens the form with the focus
    // in it; Escape closes it.
    const tabTo = async (test, max = 60) => {
        for (let i = 0; i < max; i++) {
            await page.keyboard.press('Tab');
            if (await page.evaluate(test))
                return true;
        }
        return false;
    };
    const toPools = await tabTo(() => document.activeElement?.closest('#sidenav') && document.activeElement.textContent === 'Pools');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Pools' }).waitFor();
    // The page takes the focus once it has drawn its data, which may come
    // after its heading shows.
    const focusInMain = await page.waitForFunction(() => !!document.activeElement?.closest('#main'),
        null, { timeout: 5000 }).then(() => true, () => false);
    const toNew = await tabTo(() => document.activeElement?.textContent === 'New pool');
    await page.keyboard.press('Enter');
    await page.locator('dialog[open]').waitFor({ timeout: 5000 });
    const focusInDialog = await page.evaluate(() => !!document.activeElement?.closest('dialog[open]'));
    await page.keyboard.press('Escape');
    await page.locator('dialog[open]').waitFor({ state: 'detached', timeout: 5000 });
    check(toPools && focusInMain && toNew && focusInDialog,
        'keyboard only: menu entry, page focus, New pool form and Escape all work',
        JSON.stringify({ toPools, focusInMain, toNew, focusInDialog }));

    // Pools: listed, validation, creation.
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Pools' }).click();
    await page.getByRole('heading', { name: 'Pools' }).waitFor();
    await page.locator('table.list td', { hasText: 'office' }).first().waitFor({ timeout: 10000 });
    ok('the pools page lists the pool');
    check(await page.evaluate(() => document.getElementById('main').getBoundingClientRect().left >=
        document.getElementById('sidenav').getBoundingClientRect().right),
    'after in-page navigation the admin menu stays beside the page');
    let posts = 0;
    page.on('request', (r) => { if (r.method() === 'POST' && r.url().endsWith('/api/v1/pools')) posts++; });
    await page.getByRole('button', { name: 'New pool' }).click();
    const dlg = page.locator('dialog');
    await dlg.getByLabel('Name').fill('lab');
    await dlg.getByLabel('Minimum VMs').fill('5');
    await dlg.getByLabel('Maximum VMs').fill('2');
    await dlg.getByLabel('Spare (ready) VMs').fill('1');
    await dlg.getByRole('button', { name: 'Create pool' }).click();
    const err = dlg.locator('[role=alert]');
    await err.waitFor({ timeout: 5000 });
    check(/minimum size \(5\) must not be larger than the maximum size \(2\)/.test(await err.textContent()),
        'min > max is refused with words', await err.textContent());
    check(posts === 0, 'an invalid pool is not sent');
    await dlg.getByLabel('Name').fill('office');
    await dlg.getByLabel('Minimum VMs').fill('1');
    await dlg.getByLabel('Maximum VMs').fill('3');
    await dlg.getByRole('button', { name: 'Create pool' }).click();
    await page.waitForFunction(() => /name exists/.test(document.querySelector('dialog [role=alert]')?.textContent || ''),
        null, { timeout: 10000 });
    ok("the broker's refusal (duplicate name) is shown in words");
    await dlg.getByLabel('Name').fill('lab');
    await dlg.getByLabel('Clones').selectOption('instant');
    await dlg.getByRole('button', { name: 'Create pool' }).click();
    await page.locator('.toast-ok', { hasText: 'Pool lab created' }).waitFor({ timeout: 10000 });
    await page.locator('table.list td', { hasText: 'lab' }).first().waitFor({ timeout: 10000 });
    ok('a pool is created from the form and appears without a reload');
    const pools = await page.evaluate(async () => (await (await fetch('/api/v1/pools')).json()).items);
    const lab = pools.find((p) => p.name === 'lab');
    check(lab && lab.min_size === 1 && lab.max_size === 3 && lab.spare === 1 && lab.clone === 'instant',
        'the pool has the sizes and the clone mode from the form',
        JSON.stringify(lab));
    await page.screenshot({ path: `${shots}/admin-pools.png`, fullPage: true });

    // Audit log, filtered on the server.
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('heading', { name: 'Audit log' }).waitFor();
    await page.locator('table.list tbody tr').first().waitFor();
    const asked = page.waitForRequest((r) => r.url().includes('/api/v1/audit?') && r.url().includes('action=pool.create'));
    await page.getByLabel('Action').fill('pool.create');
    await page.getByRole('button', { name: 'Apply' }).click();
    await asked;
    ok('the audit filter is sent to the server');
    await page.waitForFunction(() => {
        const cells = [...document.querySelectorAll('table.list td[data-label="Action"]')].map((c) => c.textContent);
        return cells.length >= 2 && cells.every((c) => c === 'pool.create');
    }, null, { timeout: 10000 });
    ok('the audit page shows only pool.create rows (office and lab)');
    check(new URL(page.url()).searchParams.get('action') === 'pool.create', 'the filter is kept in the page URL');
    const asked2 = page.waitForRequest((r) => r.url().includes('actor=nobody'));
    await page.getByLabel('Actor').fill('nobody');
    await page.getByRole('button', { name: 'Apply' }).click();
    await asked2;
    await page.getByText('No audit entries match').waitFor({ timeout: 10000 });
    ok('a filter that matches nothing says so');

    // Resize, with the same validation as the form.
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Pools' }).click();
    const labRow = page.locator('table.list tbody tr', { has: page.locator('strong', { hasText: /^lab$/ }) });
    await labRow.waitFor({ timeout: 10000 });
    let patches = 0;
    page.on('request', (r) => { if (r.method() === 'PATCH') patches++; });
    await labRow.getByRole('button', { name: 'Resize' }).click();
    const rd = page.locator('dialog');
    await rd.getByLabel('Minimum VMs').fill('6');
    await rd.getByLabel('Maximum VMs').fill('5');
    await rd.getByRole('button', { name: 'Resize' }).click();
    await rd.locator('[role=alert]').waitFor({ timeout: 5000 });
    check(/must not be larger/.test(await rd.locator('[role=alert]').textContent()) && patches === 0,
        'a resize with min > max is refused before sending');
    await rd.getByLabel('Minimum VMs').fill('0');
    await rd.getByLabel('Spare (ready) VMs').fill('2');
    await rd.getByRole('button', { name: 'Resize' }).click();
    await page.locator('.toast-ok', { hasText: 'lab: 0–5 VMs, 2 spare' }).waitFor({ timeout: 10000 });
    const lab2 = (await page.evaluate(async () => (await (await fetch('/api/v1/pools')).json()).items))
        .find((p) => p.name === 'lab');
    check(lab2.min_size === 0 && lab2.max_size === 5 && lab2.spare === 2, 'the pool is resized', JSON.stringify(lab2));

    // Push an image version to office.
    const officeRow = page.locator('table.list tbody tr', { has: page.locator('strong', { hasText: /^office$/ }) });
    await officeRow.getByRole('button', { name: 'Push image' }).click();
    await page.locator('dialog').getByLabel('Image version', { exact: true }).selectOption(process.env.ATRIUM_WEB_IMAGE);
    await page.locator('dialog').getByRole('button', { name: 'Push image' }).click();
    await page.locator('.toast-ok', { hasText: `image version ${process.env.ATRIUM_WEB_IMAGE}` }).waitFor({ timeout: 10000 });
    const office2 = (await page.evaluate(async () => (await (await fetch('/api/v1/pools')).json()).items))
        .find((p) => p.name === 'office');
    check(String(office2.image_version_id) === process.env.ATRIUM_WEB_IMAGE, 'the image version is pushed to the pool',
        JSON.stringify(office2.image_version_id));
    await officeRow.getByText(`version ${process.env.ATRIUM_WEB_IMAGE}`).waitFor({ timeout: 10000 });
    ok('the pools list shows the new image without a reload');

    // Who is entitled: the group made by the test script.
    await officeRow.getByRole('button', { name: 'Entitle' }).click();
    await page.locator('dialog .entitled li', { hasText: 'Group: staff' }).waitFor({ timeout: 10000 });
    ok('the Entitle dialog lists who is entitled now');
    await page.keyboard.press('Escape');

    // Images: the pushed version and the pool that uses it.
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Images' }).click();
    await page.getByText('used by office').waitFor({ timeout: 10000 });
    ok('the images page shows which pool uses a version');

    // VMs: power, filtered to ready VMs on the server.
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'VMs' }).click();
    await page.getByRole('heading', { name: 'VMs' }).waitFor();
    const vmAsked = page.waitForResponse((r) => r.url().includes('/api/v1/vms?') && r.url().includes('state=ready'));
    await page.getByLabel('State').selectOption('ready');
    await page.getByRole('button', { name: 'Apply' }).click();
    await vmAsked;
    // the filtered page is drawn: every row says ready
    await page.waitForFunction(() => {
        const cells = [...document.querySelectorAll('table.list td[data-label="State"]')].map((c) => c.textContent.trim());
        return cells.length > 0 && cells.every((c) => c.startsWith('ready'));
    }, null, { timeout: 10000 });
    const readyRow = page.locator('table.list tbody tr', { has: page.getByRole('button', { name: 'Pause' }) }).first();
    await readyRow.waitFor({ timeout: 10000 });
    const vmName = (await readyRow.locator('strong').first().textContent()).trim();
    await readyRow.getByRole('button', { name: 'Pause' }).click();
    await page.locator('.toast-ok', { hasText: `${vmName}: asked to be paused` }).waitFor({ timeout: 10000 });
    const vmsNow = await page.evaluate(async () => (await (await fetch('/api/v1/vms')).json()).items);
    check(vmsNow.find((v) => v.name === vmName)?.desired_power === 'paused', `${vmName} is asked to pause`,
        JSON.stringify(vmsNow.map((v) => [v.name, v.desired_power])));

    // VMs: the Migrate dialog of a running VM (rows only, no hostd here:
    // the task stays queued, its progress shows, and Cancel ends it).
    execFileSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', process.env.ATRIUM_WEB_DB, '-c',
        "INSERT INTO hosts (name, address, state, heartbeat_at) VALUES ('hv2', '10.0.0.2', 'online', now());" +
        " INSERT INTO vms (name, host_id, state, actual_power, desired_power)" +
        " SELECT 'mig-vm', id, 'ready', 'running', 'running' FROM hosts WHERE name = 'hv1'"], { stdio: 'ignore' });
    await page.getByRole('button', { name: 'Refresh' }).click();
    const migRow = page.locator('table.list tbody tr', { hasText: 'mig-vm' });
    await migRow.getByRole('button', { name: 'Migrate' }).click();
    const md = page.locator('dialog', { hasText: 'Migrate mig-vm' });
    await md.getByLabel('To host').selectOption(await md.locator('option', { hasText: 'hv2' }).getAttribute('value'));
    const migAsked = page.waitForResponse((r) => r.url().endsWith('/migrate') && r.request().method() === 'POST');
    await md.getByRole('button', { name: 'Migrate', exact: true }).click();
    const migReply = await (await migAsked).json();
    await md.getByText(`Migrating mig-vm to hv2`).waitFor({ timeout: 10000 });
    await md.locator('progress').waitFor({ timeout: 10000 });
    check(Number.isInteger(migReply.task_id) && (await md.textContent()).includes('0% queued'),
        'the Migrate dialog queues the migration and shows its task\'s progress', JSON.stringify(migReply));
    await md.getByRole('button', { name: 'Cancel migration' }).click();
    await md.getByText('Migration cancelled: mig-vm keeps running where it was.').waitFor({ timeout: 10000 });
    const migTask = await page.evaluate(async (id) => (await (await fetch(`/api/v1/tasks/${id}`)).json()), migReply.task_id);
    check(migTask.state === 'cancelled' && migTask.kind === 'vm.migrate', 'Cancel migration cancels the task',
        JSON.stringify(migTask));
    await md.getByText('Close', { exact: true }).click();
    // HA restart of a VM outside pools: on from its row, shown in the list.
    await migRow.getByRole('button', { name: 'HA on' }).click();
    await page.locator('.toast-ok', { hasText: 'mig-vm is restarted on another host' }).waitFor({ timeout: 10000 });
    await migRow.getByRole('button', { name: 'HA off' }).waitFor({ timeout: 10000 });
    const haNow = await page.evaluate(async () => (await (await fetch('/api/v1/vms')).json()).items);
    const haOnPoolVm = await page.locator('table.list tbody tr', { hasText: 'office-1' })
        .getByRole('button', { name: 'HA on' }).count();
    check(haNow.find((v) => v.name === 'mig-vm')?.ha === true && haOnPoolVm === 0,
        'HA is turned on from the VMs page (offered for VMs outside pools only)', JSON.stringify(haNow.map((v) => [v.name, v.ha])));

    // Hosts: maintenance on and off.
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Hosts' }).click();
    const hostRow = page.locator('table.list tbody tr', { hasText: 'hv1' });
    await hostRow.getByRole('button', { name: 'Maintenance' }).click();
    await page.locator('dialog').getByRole('button', { name: 'Maintenance' }).click();
    await page.locator('.toast-ok', { hasText: 'hv1 is in maintenance' }).waitFor({ timeout: 10000 });
    await hostRow.getByRole('button', { name: 'End maintenance' }).waitFor({ timeout: 10000 });
    const hostsNow = await page.evaluate(async () => (await (await fetch('/api/v1/hosts')).json()).items);
    check(hostsNow.find((x) => x.name === 'hv1')?.state === 'maintenance', 'a host is put in maintenance');

    // Sessions: uma's live session is logged off by the admin.
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Sessions' }).click();
    await page.getByRole('heading', { name: 'Sessions' }).waitFor();
    const umaRow = page.locator('table.list tbody tr', { has: page.getByRole('button', { name: 'Log off' }) })
        .filter({ hasText: 'uma' }).first();
    await umaRow.waitFor({ timeout: 10000 });
    ok("uma's live session is listed");
    await umaRow.getByRole('button', { name: 'Log off' }).click();
    await page.locator('dialog').getByRole('button', { name: 'Log off' }).click();
    await page.locator('.toast-ok', { hasText: 'of uma is logging off' }).waitFor({ timeout: 10000 });
    const live = await page.evaluate(async () => (await (await fetch('/api/v1/sessions?state=assigned')).json()).items
        .concat((await (await fetch('/api/v1/sessions?state=connected')).json()).items));
    check(!live.some((x) => x.username === 'uma'), 'uma has no live session left', JSON.stringify(live));

    // Users: create one from the form.
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Users' }).click();
    await page.getByRole('button', { name: 'New user' }).click();
    const ud = page.locator('dialog');
    await ud.getByLabel('User name').fill('newbie');
    await ud.getByLabel('Password').fill('newbie pw');
    await ud.getByRole('button', { name: 'Create user' }).click();
    await page.locator('.toast-ok', { hasText: 'User newbie created' }).waitFor({ timeout: 10000 });
    await page.locator('table.list strong', { hasText: /^newbie$/ }).waitFor({ timeout: 10000 });
    ok('a user is created from the form and listed');

    // Every admin page at desktop and phone size: screenshots, and no page
    // wider than a phone.  The earlier actions' toasts would cover them.
    await page.evaluate(() => document.getElementById('toasts').replaceChildren());
    for (const [label, file] of [['Hosts', 'hosts'], ['VMs', 'vms'], ['Images', 'images'], ['Sessions', 'sessions'], ['Users', 'users'],
        ['Groups', 'groups'], ['Tasks', 'tasks'], ['Audit log', 'audit'], ['Pools', 'pools']]) {
        await page.setViewportSize({ width: 1280, height: 800 });
        await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: label, exact: true }).click();
        await page.getByRole('heading', { name: label, exact: true }).waitFor();
        await page.locator('.listview:not([aria-busy])').waitFor({ timeout: 10000 });
        await page.screenshot({ path: `${shots}/admin-${file}.png`, fullPage: true });
        await page.setViewportSize({ width: 390, height: 844 });
        await page.waitForTimeout(200);
        const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        check(over <= 0, `the ${label} page fits a phone-sized screen`, `${over}px too wide`);
        await page.screenshot({ path: `${shots}/admin-${file}-phone.png`, fullPage: true });
    }
    await page.setViewportSize({ width: 1280, height: 800 });

    // The phone-sized dashboard.
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'Dashboard' }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await page.locator('#pools-h ~ * td', { hasText: 'lab' }).first().waitFor({ timeout: 10000 });
    const wide = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(wide <= 0, 'the dashboard fits a phone-sized screen', `${wide}px too wide`);
    await page.screenshot({ path: `${shots}/admin-dashboard-phone.png`, fullPage: true });
    noProblems(page, 'admin');
    await page.context().close();
});

await browser.close();
finish();

// Live CPU/memory charts in the browser (run by test-metrics.sh, with a real
// hostd running one TCG test guest): the dashboard's host and VM charts draw
// every sample of metric_samples in their window, their newest point is the
// newest row (values read back from the SVG geometry and from the legend),
// and they move on to newer rows without a page reload.  The Hosts and VMs
// pages' row charts show the same rows.  Then the VMs page's dialogs: the
// live memory target (hostd's balloon must report it, same QEMU) and a
// snapshot with RAM taken, refused twice, reverted and deleted.
// Screenshots at desktop and phone size.
//
// usage: node metrics.test.mjs PATH/TO/playwright-core/index.mjs   (env from test-metrics.sh)

import { execFileSync } from 'node:child_process';
import { check, fail, finish, ok, sleep } from './check.mjs';

const { chromium } = await import(process.argv[2]);
const env = process.env;
const base = env.ATRIUM_WEB_BASE;
const shots = env.ATRIUM_WEB_SHOTS;
const hostId = Number(env.ATRIUM_WEB_HOST);
const vmId = Number(env.ATRIUM_WEB_VM);


function sql(q) {
    return execFileSync('psql', ['-X', '-q', '-t', '-A', '-F', '|', '-v', 'ON_ERROR_STOP=1',
        env.ATRIUM_WEB_CONNINFO, '-c', q], { encoding: 'utf8' }).trim();
}
// The samples of a chart's subject, as SQL.
const rowsOf = (kind, id) => (kind === 'host'
    ? `metric_samples WHERE host_id = ${id} AND vm_id IS NULL` : `metric_samples WHERE vm_id = ${id}`);

// What a chart element shows: its newest sample's time, the values its last
// path vertices stand for (from the SVG geometry), the legend's text and the
// number of vertices.
async function readChart(chart) {
    return chart.evaluate((el) => {
        const svg = el.querySelector('svg');
        const top = Number(svg.dataset.plotTop), height = Number(svg.dataset.plotHeight);
        const yMax = Number(svg.dataset.yMax);
        const series = {};
        for (const p of svg.querySelectorAll('path[data-series]')) {
            const nums = p.getAttribute('d').match(/-?[\d.]+/g).map(Number);
            const y = nums[nums.length - 1];
            series[p.dataset.series] = { value: yMax * (1 - (y - top) / height), vertices: nums.length / 2 };
        }
        return {
            at: el.dataset.latestAt || null,
            cpu: series.cpu, mem: series.mem,
            legend: el.querySelector('figcaption').textContent,
            label: svg.querySelector('title').textContent,
        };
    });
}

// The chart agrees with metric_samples: its newest point is a row with the
// drawn CPU and memory, no row older than 8 s is missing after it (one poll
// is 5 s), and it drew every row of the window.
function compare(kind, id, c) {
    if (!c.at || !c.cpu || !c.mem)
        return `nothing drawn: ${JSON.stringify(c)}`;
    const memMax = kind === 'host' ? 's.mem_total_mb' : '(SELECT memory_mb FROM vms WHERE id = s.vm_id)';
    const row = sql(`SELECT round(s.cpu_pct::numeric, 2), s.mem_used_mb, ${memMax},
                      (SELECT count(*) FROM ${rowsOf(kind, id)} AND at <= '${c.at}'::timestamptz
                        AND at > '${c.at}'::timestamptz - interval '15 minutes'),
                      NOT EXISTS (SELECT 1 FROM ${rowsOf(kind, id)} AND at > '${c.at}'::timestamptz
                                  AND at < now() - interval '8 seconds')
                     FROM metric_samples s WHERE s.${kind === 'host' ? 'host_id' : 'vm_id'} = ${id}
                     ${kind === 'host' ? 'AND s.vm_id IS NULL' : ''} AND s.at = '${c.at}'::timestamptz`);
    if (!row)
        return `no metric_samples row at ${c.at}`;
    const [cpu, memUsed, memTotal, n, current] = row.split('|');
    const memPct = (100 * Number(memUsed)) / Number(memTotal);
    const why = [];
    if (Math.abs(c.cpu.value - Number(cpu)) > 0.2)
        why.push(`CPU drawn ${c.cpu.value.toFixed(2)}, row ${cpu}`);
    if (Math.abs(c.mem.value - memPct) > 0.2)
        why.push(`memory drawn ${c.mem.value.toFixed(2)} %, row ${memUsed}/${memTotal} MiB`);
    if (!c.legend.includes(`CPU ${Number(cpu).toFixed(1)} %`))
        why.push(`legend "${c.legend}" lacks CPU ${Number(cpu).toFixed(1)} %`);
    if (c.cpu.vertices !== Number(n) || c.mem.vertices !== Number(n))
        why.push(`${c.cpu.vertices}/${c.mem.vertices} points drawn, ${n} rows in the window`);
    if (current !== 't')
        why.push('rows older than 8 s are newer than the newest point');
    return why.length ? why.join('; ') : null;
}

const browser = await chromium.launch({
    executablePath: env.ATRIUM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run',
        '--disable-component-update', '--disable-sync'],
});
const problems = [];
try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
    await page.goto(`${base}/`);
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill('correct horse');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor({ timeout: 10000 });

    const hostChart = page.locator(`#host-charts figure[data-kind="host"][data-id="${hostId}"]`);
    const vmChart = page.locator(`#vm-charts figure[data-kind="vm"][data-id="${vmId}"]`);
    await hostChart.and(page.locator('[data-latest-at]')).waitFor({ timeout: 20000 });
    await vmChart.and(page.locator('[data-latest-at]')).waitFor({ timeout: 20000 });
    await page.evaluate(() => { window.atriumNoReload = true; });

    for (const [kind, id, chart] of [['host', hostId, hostChart], ['vm', vmId, vmChart]]) {
        const c = await readChart(chart);
        const why = compare(kind, id, c);
        check(!why, `the dashboard's ${kind} chart draws the latest metric_samples row (CPU ${c.cpu && c.cpu.value.toFixed(1)} %, `
            + `memory ${c.mem && c.mem.value.toFixed(1)} %, ${c.cpu && c.cpu.vertices} points)`, why);
        check(/web-metrics|chart-vm/.test(c.label) && /CPU/.test(c.label), `the ${kind} chart has a text alternative ("${c.label}")`);
    }
    await page.screenshot({ path: `${shots}/dashboard-charts.png`, fullPage: true });

    // Live: both charts move on to newer rows, with no reload of the page.
    for (const [kind, id, chart] of [['host', hostId, hostChart], ['vm', vmId, vmChart]]) {
        const before = (await readChart(chart)).at;
        const t = Date.now();
        let c;
        while (Date.now() - t < 20000) {
            c = await readChart(chart);
            if (c.at !== before)
                break;
            await sleep(500);
        }
        const why = c.at === before ? `still at ${before} after 20 s` : compare(kind, id, c);
        check(!why && await page.evaluate(() => window.atriumNoReload === true),
            `the ${kind} chart moved from ${before.slice(11, 19)} to ${c.at.slice(11, 19)} by itself, values still equal their row (${Date.now() - t} ms)`, why);
    }

    // The Hosts and VMs pages: a chart in each row.
    const nav = (name) => page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name, exact: true }).click();
    await nav('Hosts');
    const hostRow = page.locator(`table.list figure[data-kind="host"][data-id="${hostId}"]`);
    await hostRow.and(page.locator('[data-latest-at]')).waitFor({ timeout: 20000 });
    let why = compare('host', hostId, await readChart(hostRow));
    check(!why, 'the Hosts page shows the host\'s chart in its row, drawing the latest row', why);
    await page.screenshot({ path: `${shots}/hosts-charts.png`, fullPage: true });
    await nav('VMs');
    const vmRow = page.locator(`table.list figure[data-kind="vm"][data-id="${vmId}"]`);
    await vmRow.and(page.locator('[data-latest-at]')).waitFor({ timeout: 20000 });
    why = compare('vm', vmId, await readChart(vmRow));
    check(!why, 'the VMs page shows the VM\'s chart in its row, drawing the latest row', why);
    await page.screenshot({ path: `${shots}/vms-charts.png`, fullPage: true });

    // Live resources from the VMs page: a memory target out of range is
    // refused in words before anything is sent; 160 MiB is saved, and the
    // VM's hostd applies it (QEMU's balloon, recorded in metric_samples)
    // while the VM keeps running in the same QEMU.
    const pidBefore = sql(`SELECT qemu_pid FROM vms WHERE id = ${vmId}`);
    let patches = 0;
    page.on('request', (r) => { if (r.method() === 'PATCH' && r.url().includes('/resources')) patches++; });
    const vmTr = page.locator('table.list tbody tr', { has: page.locator(`figure[data-id="${vmId}"]`) });
    await vmTr.getByRole('button', { name: 'Resources' }).click();
    const rd = page.locator('dialog');
    await rd.getByLabel('Memory target (MiB)').fill('10');
    await rd.getByRole('button', { name: 'Apply' }).click();
    const refusal = await rd.locator('[role=alert]').textContent();
    check(/Memory target must be a whole number from 64 to 256/.test(refusal) && patches === 0,
        'a memory target out of range is refused in words, nothing sent', refusal);
    await page.screenshot({ path: `${shots}/vm-resources.png` });
    await rd.getByLabel('Memory target (MiB)').fill('160');
    await rd.getByRole('button', { name: 'Apply' }).click();
    await page.locator('.toast-ok', { hasText: 'chart-vm: live resources saved' }).waitFor({ timeout: 10000 });
    check(patches === 1 && sql(`SELECT balloon_mb FROM vms WHERE id = ${vmId}`) === '160',
        'the memory target is saved from the dialog', `${patches} PATCH`);
    const t0 = Date.now();
    let applied = '';
    while (Date.now() - t0 < 60000) {
        applied = sql(`SELECT applied_gen = resources_gen AND EXISTS (SELECT 1 FROM metric_samples
                         WHERE vm_id = ${vmId} AND balloon_mb = 160 AND at > now() - interval '10 seconds')
                       FROM vms WHERE id = ${vmId}`);
        if (applied === 't')
            break;
        await sleep(1000);
    }
    check(applied === 't' && sql(`SELECT qemu_pid FROM vms WHERE id = ${vmId}`) === pidBefore,
        `hostd applies it without a restart: QEMU's balloon reports 160 MiB (${Date.now() - t0} ms), same QEMU process`);
    check(sql(`SELECT count(*) FROM audit_log WHERE action = 'vm.resources' AND actor = 'alice' AND target_id = '${vmId}'`) === '1',
        'the change is in the audit log');
    await vmTr.getByRole('button', { name: 'Resources' }).click();
    const note = await page.locator('dialog').locator('p.muted').first().textContent();
    check(/Its host has applied the current values/.test(note) && await page.locator('dialog').getByLabel('Memory target (MiB)').inputValue() === '160',
        'the dialog shows the value and that the host applied it', note);
    await page.keyboard.press('Escape');
    await page.locator('dialog[open]').waitFor({ state: 'detached', timeout: 5000 });

    // Snapshots from the VMs page: a bad name is refused in words; one with
    // RAM is taken by hostd (progress in the dialog) and becomes ready; a
    // second of the same name is refused by the broker; the VM is taken back
    // to it (the task succeeds, the VM runs on); then it is deleted.
    await vmTr.getByRole('button', { name: 'Snapshots' }).click();
    const sd = page.locator('dialog[open]');
    await sd.getByText('No snapshots yet.').waitFor({ timeout: 10000 });
    await sd.getByLabel('Snapshot name').fill('.bad');
    await sd.getByRole('button', { name: 'Take snapshot' }).click();
    check(/must be 1–63 letters/.test(await sd.locator('[role=alert]').textContent()), 'a bad snapshot name is refused in words');
    await sd.getByLabel('Snapshot name').fill('before-test');
    await sd.getByLabel('Description').fill('from the browser');
    const tSnap = Date.now();
    await sd.getByRole('button', { name: 'Take snapshot' }).click();
    const snapRow = sd.locator('tbody tr', { hasText: 'before-test' });
    await snapRow.waitFor({ timeout: 10000 });
    const sawBar = await snapRow.locator('progress').count().catch(() => 0);
    await snapRow.locator('.badge', { hasText: /^ready$/ }).waitFor({ timeout: 180000 });
    const snapDb = sql(`SELECT state || '|' || with_ram || '|' || description FROM snapshots WHERE vm_id = ${vmId} AND name = 'before-test'`);
    check(snapDb === 'ready|true|from the browser', `a snapshot with RAM is taken from the dialog and shown ready (${Date.now() - tSnap} ms${sawBar ? ', progress bar seen' : ''})`, snapDb);
    await page.screenshot({ path: `${shots}/vm-snapshots.png` });
    await sd.locator('.msg-ok', { hasText: 'Snapshot before-test is ready.' }).waitFor({ timeout: 10000 });
    ok('the dialog says when the snapshot is ready');
    await sd.getByLabel('Snapshot name').fill('before-test');
    await sd.getByRole('button', { name: 'Take snapshot' }).click();
    await sd.locator('[role=alert]', { hasText: 'already has a snapshot of that name' }).waitFor({ timeout: 10000 });
    ok('a second snapshot of the same name is refused in words');
    const tRev = Date.now();
    await snapRow.getByRole('button', { name: 'Revert' }).click();
    await page.locator('dialog[open]', { hasText: 'Take chart-vm back to snapshot before-test' }).getByRole('button', { name: 'Revert' }).click();
    let rev = '';
    while (Date.now() - tRev < 180000) {
        rev = sql(`SELECT state FROM tasks WHERE kind = 'vm.snapshot.revert' AND vm_id = ${vmId} ORDER BY id DESC LIMIT 1`);
        if (rev === 'succeeded' || rev === 'failed')
            break;
        await sleep(1000);
    }
    await snapRow.getByRole('button', { name: 'Revert' }).and(page.locator(':enabled')).waitFor({ timeout: 15000 });
    check(rev === 'succeeded' && sql(`SELECT actual_power FROM vms WHERE id = ${vmId}`) === 'running',
        `the VM is taken back to the snapshot and runs (${Date.now() - tRev} ms)`, `task ${rev}`);
    await snapRow.getByRole('button', { name: 'Delete' }).click();
    await page.locator('dialog[open]', { hasText: 'Delete snapshot before-test' }).getByRole('button', { name: 'Delete' }).click();
    await sd.getByText('No snapshots yet.').waitFor({ timeout: 120000 });
    check(sql(`SELECT count(*) FROM snapshots WHERE vm_id = ${vmId}`) === '0', 'the snapshot is deleted from the dialog');
    check(sql(`SELECT string_agg(action, ',' ORDER BY id) FROM audit_log WHERE action LIKE 'vm.snapshot%'`) ===
        'vm.snapshot,vm.snapshot.revert,vm.snapshot.delete', 'taking, reverting and deleting are audited');
    await page.keyboard.press('Escape');

    // Phone size: the dashboard's charts fit the screen's width.
    await page.setViewportSize({ width: 390, height: 844 });
    await nav('Dashboard');
    await hostChart.and(page.locator('[data-latest-at]')).waitFor({ timeout: 20000 });
    const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1 &&
        [...document.querySelectorAll('#host-charts svg, #vm-charts svg')].every((s) => s.getBoundingClientRect().right <= window.innerWidth));
    check(fits, 'on a phone-sized screen the charts fit the width (no sideways scrolling)');
    await page.screenshot({ path: `${shots}/dashboard-charts-phone.png`, fullPage: true });

    // the one refusal this test provokes on purpose is the duplicate snapshot (409)
    const unexpected = problems.filter((p) => !/status of 409/.test(p));
    check(unexpected.length === 0, 'no console errors or CSP violations', unexpected.join(' | '));
} catch (e) {
    fail('metrics', e.message.split('\n')[0]);
} finally {
    await browser.close();
}
finish();

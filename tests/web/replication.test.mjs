// Disaster-recovery replication on the admin console's VMs page, run by
// test-replication.sh against a real broker, driven from the keyboard:
// the Replication dialog replicates rep-vm to hv2 (the row says so), the
// recovery point's age counts up in the dialog and in the row without a
// reload, a sync error written meanwhile reaches the row within the page's
// refresh, Sync now makes the sync due, a recovery while hv1 heart-beats is
// refused in the broker's words, a forced one (confirmed) queues the task
// and follows it to its end, and Stop replication (confirmed) turns it off.
// What the hostds would write is written with psql.
//
// usage: node replication.test.mjs PATH/TO/playwright-core/index.mjs   (env from test-replication.sh)

import { execFileSync } from 'node:child_process';
import { check, finish, launchChromium, ok, step, watchedPage } from './check.mjs';

const { chromium } = await import(process.argv[2]);
const env = process.env;
const base = env.ATRIUM_WEB_BASE;
const shots = env.ATRIUM_WEB_SHOTS;

const sql = (q) => execFileSync('psql', ['-X', '-q', '-t', '-A', '-v', 'ON_ERROR_STOP=1', env.ATRIUM_WEB_DB, '-c', q],
    { encoding: 'utf8' }).trim();

// "recovery point 1 min 5 s old" -> 65
function seconds(text) {
    const m = /(?:(\d+) d )?(?:(\d+) h )?(?:(\d+) min )?(?:(\d+) s)?(?= old)/.exec(text || '');
    if (!m || !m[0])
        return null;
    const [d, hh, mm, ss] = m.slice(1).map((x) => Number(x || 0));
    return ((d * 24 + hh) * 60 + mm) * 60 + ss;
}

const browser = await launchChromium(chromium);

await step('replication', async () => {
    // 404: the dialog asks for the replication of a VM that has none yet;
    // 409: the recovery this test has refused on purpose
    const page = await watchedPage(browser, { viewport: { width: 1280, height: 800 } },
        (t) => /status of (404|409)/.test(t));
    const vm = sql("SELECT id FROM vms WHERE name = 'rep-vm'");
    const hv2 = sql("SELECT id FROM hosts WHERE name = 'hv2'");
    const keepAlive = () => sql("UPDATE hosts SET heartbeat_at = now()");

    await page.goto(`${base}/`);
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill('correct horse');
    await page.getByLabel('Password').press('Enter');
    await page.getByRole('heading', { name: 'Dashboard' }).waitFor();
    await page.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: 'VMs', exact: true }).click();
    await page.getByRole('heading', { name: 'VMs', exact: true }).waitFor();
    const row = page.locator('table.list tbody tr', { hasText: 'rep-vm' });
    const cell = row.locator('td[data-label="Replication"]');
    await cell.getByText('not replicated').waitFor({ timeout: 10000 });
    ok('the row says rep-vm is not replicated');
    // a marker that a page load would wipe: everything below happens without one
    await page.evaluate(() => { window.atriumNoReload = true; });

    // ---- set, from the keyboard
    await row.getByRole('button', { name: 'Replication' }).focus();
    await page.keyboard.press('Enter');
    const dlg = page.getByRole('dialog', { name: 'Replication of rep-vm' });
    await dlg.waitFor();
    await dlg.getByText('rep-vm is not replicated.').waitFor();
    check(await dlg.getByLabel('Copy to host').evaluate((el) => el === document.activeElement),
        'the dialog opens with the focus on its first field');
    await dlg.getByLabel('Copy to host').selectOption(hv2);
    await dlg.getByLabel('Every (seconds)').fill('5');
    await dlg.getByLabel('Every (seconds)').press('Enter');
    await dlg.getByText('The interval must be a whole number of seconds from 10 to 604800.').waitFor();
    ok('an interval under 10 s is refused in words before anything is sent');
    await dlg.getByLabel('Every (seconds)').fill('60');
    await dlg.getByLabel('Every (seconds)').press('Enter');
    await dlg.getByText('rep-vm is copied to hv2 every 60 s.').waitFor({ timeout: 10000 });
    check(sql(`SELECT target_host_id = ${hv2} AND interval_s = 60 AND enabled FROM vm_replication WHERE vm_id = ${vm}`) === 't',
        'Replicate writes the replication: to hv2 every 60 s');
    await dlg.locator('.facts').getByText('waiting').waitFor();
    ok('the dialog shows it waiting for its first copy');

    // ---- a complete copy 30 s old (as hv2's hostd records it): the age counts up
    sql(`UPDATE vm_replication SET layer_path = '/var/lib/atrium/replicas/vm-${vm}/9.qcow2', layer_host_id = ${hv2},
         point_at = now() - interval '30 s', last_sync_at = now() - interval '28 s', syncs = 1,
         last_bytes = 17301504, last_full = true WHERE vm_id = ${vm}`);
    const age = dlg.locator('.facts .rep-age');
    await age.waitFor({ timeout: 10000 });
    const a1 = seconds(await age.textContent());
    await page.waitForTimeout(3500);
    const a2 = seconds(await age.textContent());
    check(a1 >= 30 && a2 >= a1 + 2, 'the dialog shows the recovery point and its age counting up', `${a1} then ${a2}`);
    check((await dlg.locator('.facts').textContent()).includes('17301504 bytes, full'),
        'and the last complete sync with its size', await dlg.locator('.facts').textContent());

    // ---- sync now
    sql(`UPDATE vm_replication SET next_sync_at = now() + interval '1 h' WHERE vm_id = ${vm}`);
    await dlg.getByRole('button', { name: 'Sync now' }).click();
    await dlg.getByText('A sync of rep-vm is due now').waitFor({ timeout: 10000 });
    check(sql(`SELECT next_sync_at <= now() FROM vm_replication WHERE vm_id = ${vm}`) === 't',
        'Sync now makes the next sync due');

    // ---- recover: refused while hv1 heart-beats, then forced and followed
    keepAlive();
    await dlg.getByRole('button', { name: 'Recover…' }).click();
    const confirm = page.getByRole('dialog', { name: /^Recover rep-vm on hv2\?/ });
    await confirm.waitFor();
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter'); // Cancel has the focus first: Tab to Recover
    await dlg.getByText(/its host hv1 is alive \(heartbeat \d+ ms ago\)/).waitFor({ timeout: 10000 });
    check(sql("SELECT count(*) FROM tasks WHERE kind = 'vm.recover'") === '0',
        'a recovery while hv1 heart-beats is refused in the broker\'s words, and nothing is queued');
    await page.screenshot({ path: `${shots}/admin-vms-replication.png`, fullPage: true });
    await dlg.getByLabel(/^Force/).check();
    await dlg.getByRole('button', { name: 'Recover…' }).click();
    await confirm.waitFor();
    await confirm.getByRole('button', { name: 'Recover' }).click();
    await dlg.getByText(/^Recovering rep-vm on hv2: task #\d+\.$/).waitFor({ timeout: 10000 });
    const task = sql(`SELECT id FROM tasks WHERE kind = 'vm.recover' AND vm_id = ${vm} AND host_id = ${hv2}
        AND state = 'queued' AND params = '{"force": true}'::jsonb`);
    check(/^\d+$/.test(task), 'the forced recovery queues vm.recover on hv2 (confirmed first)', task);
    await dlg.locator('progress').waitFor({ timeout: 10000 });
    ok('its task\'s progress shows');
    sql(`UPDATE tasks SET state = 'succeeded', progress = 100, finished_at = now(),
         result = '{"point_us": 1, "point_age_s": 95}' WHERE id = ${task}`);
    await dlg.getByText('rep-vm was recovered on hv2 from its copy of 1 min 35 s ago; it boots there.').waitFor({ timeout: 10000 });
    ok('the dialog follows the task to its end and gives the recovery point\'s age');
    await page.keyboard.press('Escape');
    await dlg.waitFor({ state: 'detached' });

    // ---- the row: target, state, the age counting up, a sync error within the page's refresh
    await cell.getByText('to hv2').waitFor({ timeout: 10000 });
    const rowAge = cell.locator('.rep-age');
    const r1 = seconds(await rowAge.textContent());
    await page.waitForTimeout(3500);
    const r2 = seconds(await rowAge.textContent());
    check(r1 >= 30 && r2 >= r1 + 2, 'the row shows the replication to hv2 and its recovery point\'s age counting up',
        `${r1} then ${r2}`);
    sql(`UPDATE vm_replication SET last_error = 'the target host went away' WHERE vm_id = ${vm}`);
    await cell.getByText('the target host went away').waitFor({ timeout: 25000 });
    await cell.getByText('failing').waitFor();
    ok('a failed sync reaches the row without a reload (state failing, its error)');

    // ---- stop replication (confirmed)
    await row.getByRole('button', { name: 'Replication' }).click();
    await dlg.waitFor();
    await dlg.getByRole('button', { name: 'Stop replication' }).click();
    await page.getByRole('dialog', { name: /^Stop replicating rep-vm\?/ }).getByRole('button', { name: 'Stop replication' }).click();
    await dlg.getByText('rep-vm is no longer replicated; its copy on hv2 stays.').waitFor({ timeout: 10000 });
    check(sql(`SELECT NOT enabled FROM vm_replication WHERE vm_id = ${vm}`) === 't', 'Stop replication turns it off');
    check(await dlg.getByRole('button', { name: 'Sync now' }).isDisabled(), 'Sync now is offered only while it is on');
    await dlg.getByRole('button', { name: 'Close' }).click();
    await cell.locator('.badge', { hasText: /^off$/ }).waitFor({ timeout: 10000 });
    ok('the row says off');

    check(await page.evaluate(() => window.atriumNoReload === true), 'all of it without a page load');
    const audits = sql("SELECT string_agg(action, ',' ORDER BY id) FROM audit_log WHERE action LIKE 'vm.re%'");
    check(audits === 'vm.replication.set,vm.replication.sync,vm.recover,vm.replication.off',
        'each act is audited', audits);
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(200);
    const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(over <= 0, 'the VMs page with its Replication column fits a phone-sized screen', `${over}px too wide`);
    await page.screenshot({ path: `${shots}/admin-vms-replication-phone.png`, fullPage: true });
    check(page.problems.length === 0, 'no console errors or CSP violations', page.problems.join(' | '));
    await page.context().close();
});

await browser.close();
finish();

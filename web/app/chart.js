// Live CPU and memory charts of a host or a VM, from the samples atrium-hostd
// records (GET /api/v1/hosts/{id}/metrics, /api/v1/vms/{id}/metrics), drawn
// as plain SVG: no chart library, nothing inline (the CSP allows neither
// inline styles nor scripts; colours come from style.css classes).
//
// A chart asks once for the last 15 minutes, then every few seconds only for
// the samples newer than the newest it holds (since=), so a poll carries one
// or two rows.  The time axis is the broker's clock ("now" in each reply),
// never the browser's, so a skewed laptop clock cannot push the points off
// the chart.  A chart stops polling by itself once its element has left the
// page (the page changed or its list was redrawn).

import { api, errorText, qs } from './api.js';
import { h, fmtMiB } from './ui.js';

const SVG = 'http://www.w3.org/2000/svg';
export const CHART_WINDOW_MS = 15 * 60 * 1000;
const POLL_MS = 5000;
// A pause longer than this between two samples (a stopped VM, a host that
// was down) breaks the line instead of drawing a slope across the gap.
const GAP_MS = 30 * 1000;

function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {}))
        el.setAttribute(k, String(v));
    for (const c of children)
        el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
}

// One sample as the chart keeps it: time in ms, CPU % and memory.
function point(kind, reply, x) {
    const memMax = kind === 'host' ? x.mem_total_mb : reply.memory_mb;
    return {
        at: x.at,
        t: Date.parse(x.at),
        cpu: Number(x.cpu_pct) || 0,
        memMb: x.mem_used_mb || 0,
        memMaxMb: memMax || 0,
        mem: memMax ? (100 * (x.mem_used_mb || 0)) / memMax : 0,
    };
}

const fmtPct = (v) => `${v.toFixed(1)} %`;

/*
 * liveChart('host' | 'vm', id, {label, compact}) -> element
 *   label: the name shown above the chart (default: the name the API gives)
 *   compact: a small chart for a table row (no axes, one-line legend)
 * The element carries data-latest-at (the newest sample drawn) for tests
 * and for people who inspect it.
 */
export function liveChart(kind, id, { label, compact = false } = {}) {
    const W = compact ? 180 : 420, H = compact ? 44 : 140;
    const pad = compact ? { l: 1, r: 1, t: 2, b: 2 } : { l: 40, r: 8, t: 8, b: 22 };
    const plotW = W - pad.l - pad.r, plotH = H - pad.t - pad.b;
    const path = kind === 'host' ? `/hosts/${id}/metrics` : `/vms/${id}/metrics`;

    const name = h('span', { class: 'chart-name' }, label || `${kind === 'host' ? 'Host' : 'VM'} #${id}`);
    const cpuText = h('span', { class: 'chart-key chart-key-cpu' }, 'CPU —');
    const memText = h('span', { class: 'chart-key chart-key-mem' }, 'memory —');
    const note = h('p', { class: 'chart-note muted small', 'aria-live': 'polite' }, 'Loading samples…');
    const box = svg('svg', {
        class: 'chart-svg', viewBox: `0 0 ${W} ${H}`, role: 'img',
        'data-plot-top': pad.t, 'data-plot-height': plotH, 'data-plot-left': pad.l, 'data-plot-width': plotW,
    });
    const title = svg('title', {}, '');
    box.append(title);
    const el = h('figure', { class: `chart${compact ? ' chart-compact' : ''}`, dataset: { kind, id: String(id) } },
        h('figcaption', {}, compact ? null : name, cpuText, memText), box, note);

    let points = [];
    let serverNow = 0;
    let timer = null;
    let started = false;
    let gone = false;

    function draw() {
        const from = serverNow - CHART_WINDOW_MS;
        points = points.filter((p) => p.t > from);
        const top = Math.max(100, ...points.map((p) => Math.max(p.cpu, p.mem)));
        const yMax = Math.ceil(top / 50) * 50;
        const x = (t) => (pad.l + ((t - from) / CHART_WINDOW_MS) * plotW).toFixed(1);
        const y = (v) => (pad.t + plotH * (1 - v / yMax)).toFixed(1);
        box.replaceChildren(title);
        box.setAttribute('data-y-max', yMax);
        if (!compact) {
            for (const v of [0, yMax / 2, yMax]) {
                box.append(svg('line', { class: 'chart-grid', x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }),
                    svg('text', { class: 'chart-axis', x: pad.l - 4, y: Number(y(v)) + 4, 'text-anchor': 'end' },
                        v === yMax ? `${v}%` : String(v)));
            }
            box.append(svg('text', { class: 'chart-axis', x: pad.l, y: H - 4 }, '−15 min'),
                svg('text', { class: 'chart-axis', x: W - pad.r, y: H - 4, 'text-anchor': 'end' }, 'now'));
        } else {
            box.append(svg('line', { class: 'chart-grid', x1: pad.l, x2: W - pad.r, y1: y(100), y2: y(100) }));
        }
        for (const [series, cls] of [['mem', 'chart-mem'], ['cpu', 'chart-cpu']]) {
            let d = '';
            let prev = null;
            for (const p of points) {
                d += `${!prev || p.t - prev.t > GAP_MS ? 'M' : 'L'}${x(p.t)} ${y(p[series])} `;
                prev = p;
            }
            if (d)
                box.append(svg('path', { class: `chart-line ${cls}`, d: d.trim(), 'data-series': series }));
        }
        const last = points[points.length - 1];
        if (last) {
            box.append(svg('circle', { class: 'chart-dot chart-cpu', cx: x(last.t), cy: y(last.cpu), r: compact ? 2 : 3 }),
                svg('circle', { class: 'chart-dot chart-mem', cx: x(last.t), cy: y(last.mem), r: compact ? 2 : 3 }));
            el.dataset.latestAt = last.at;
            cpuText.textContent = `CPU ${fmtPct(last.cpu)}`;
            memText.textContent = last.memMaxMb
                ? `memory ${fmtMiB(last.memMb)} of ${fmtMiB(last.memMaxMb)} (${Math.round(last.mem)} %)`
                : `memory ${fmtMiB(last.memMb)}`;
            title.textContent = `${name.textContent}: CPU ${fmtPct(last.cpu)}, ${memText.textContent}; last 15 minutes`;
            note.textContent = '';
            note.hidden = true;
        } else {
            delete el.dataset.latestAt;
            cpuText.textContent = 'CPU —';
            memText.textContent = 'memory —';
            title.textContent = `${name.textContent}: no samples in the last 15 minutes`;
            note.hidden = false;
            note.textContent = kind === 'host'
                ? 'No samples in the last 15 minutes: is atrium-hostd running on this host?'
                : 'No samples in the last 15 minutes: the VM is not running.';
        }
    }

    async function poll() {
        timer = null;
        // No longer on the page (it is put there right after the first call): stop.
        if (gone || (started && !el.isConnected))
            return;
        started = true;
        // A tab nobody looks at asks for nothing; it catches up (since=) when shown.
        if (document.hidden && points.length) {
            timer = setTimeout(poll, POLL_MS);
            return;
        }
        try {
            const since = points.length ? points[points.length - 1].at : undefined;
            const reply = await api('GET', `${path}${qs({ since })}`);
            if (!label && reply.name)
                name.textContent = reply.name;
            serverNow = Date.parse(reply.now) || Date.now();
            for (const x of reply.items || [])
                points.push(point(kind, reply, x));
            el.classList.remove('chart-failed');
            draw();
        } catch (e) {
            el.classList.add('chart-failed');
            note.hidden = false;
            if (e.status === 404) {
                gone = true;
                note.textContent = `This ${kind === 'host' ? 'host' : 'VM'} no longer exists.`;
                return;
            }
            note.textContent = `Samples cannot be read: ${errorText(e)} Retrying…`;
        }
        timer = setTimeout(poll, POLL_MS);
    }

    el.stop = () => {
        gone = true;
        clearTimeout(timer);
    };
    poll();
    return el;
}

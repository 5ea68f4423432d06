#!/usr/bin/env node
// Lighthouse audits of a few pages in Debian's Chromium, headless, with a
// new empty profile; t/085-lighthouse.t runs it against a test nginx.
//
//   node t/browser/lighthouse.mjs BASE_URL [PATH ...]
//
// The paths default to the catalogue, a procedure page and the login
// page.  For each page it prints one JSON object a line on stdout:
//   {"type":"page","path":"/","scores":{"performance":0.99,...},
//    "failing":{"seo":[{"id":"...","title":"...","score":0}],...}}
// where "failing" lists, per category, the audits that count for its
// score and did not pass; then {"type":"done","pages":N}.  A summary for
// people goes to stderr.  The exit status is 0 when every page was
// audited, 1 when the browser or Lighthouse could not run, 2 on bad
// arguments.
//
// Environment: SHINSEI_CHROMIUM (default /usr/bin/chromium),
// LIGHTHOUSE_TIMEOUT_MS (the whole run, default 300000).

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import lighthouse from 'lighthouse';

const CHROMIUM = process.env.SHINSEI_CHROMIUM || '/usr/bin/chromium';
// as a11y.mjs; the machine reaches nothing beyond loopback, so nothing
// that would go out (updates, sync, field data) is started
const CHROMIUM_ARGS = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync',
];
const CATEGORIES = ['performance', 'accessibility', 'best-practices', 'seo'];
const PAGES = ['/', '/procedures/koseki', '/login'];
const TIMEOUT = Number(process.env.LIGHTHOUSE_TIMEOUT_MS || 300000);

function usage(msg) {
    process.stderr.write(`lighthouse.mjs: ${msg}\n`
        + 'usage: node lighthouse.mjs BASE_URL [PATH ...]\n');
    process.exit(2);
}

const [base, ...paths] = process.argv.slice(2);
if (!base || !/^https?:\/\//.test(base)) usage('BASE_URL (http://host:port) is required');
const pages = paths.length ? paths : PAGES;

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}

// Chromium with a new empty profile and the DevTools port it chose,
// which it writes into the profile once it listens
async function startChromium(profile) {
    const child = spawn(CHROMIUM, [...CHROMIUM_ARGS, `--user-data-dir=${profile}`,
                                   '--remote-debugging-port=0', 'about:blank'],
                        { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d) => { log = (log + d).slice(-4000); });
    const exited = new Promise((resolve) => child.on('exit', resolve));

    for (let i = 0; i < 300; i++) {
        if (child.exitCode !== null) break;
        try {
            const port = Number(readFileSync(join(profile, 'DevToolsActivePort'),
                                             'utf8').split('\n')[0]);
            if (port > 0) return { child, port, exited };
        } catch { /* not yet */ }
        await sleep(100);
    }
    child.kill('SIGKILL');
    throw new Error(`${CHROMIUM} gave no DevTools port:\n${log}`);
}

function failingAudits(lhr, id) {
    return lhr.categories[id].auditRefs
        .filter((ref) => ref.weight > 0)
        .map((ref) => lhr.audits[ref.id])
        .filter((a) => a.score !== null && a.score < 1)
        .map((a) => ({ id: a.id, title: a.title, score: a.score,
                       ...(a.displayValue ? { displayValue: a.displayValue } : {}) }));
}

const profile = mkdtempSync(join(tmpdir(), 'shinsei-lighthouse-'));
let chrome;
const fence = setTimeout(() => {
    process.stderr.write(`lighthouse.mjs: over ${TIMEOUT} ms; stopping\n`);
    if (chrome) chrome.child.kill('SIGKILL');
    process.exit(1);
}, TIMEOUT);

let status = 0;
try {
    chrome = await startChromium(profile);
    for (const path of pages) {
        const url = base.replace(/\/+$/, '') + path;
        const result = await lighthouse(url, {
            port: chrome.port,
            output: 'json',
            logLevel: 'error',
            onlyCategories: CATEGORIES,
            disableFullPageScreenshot: true,
        });
        const lhr = result.lhr;
        if (lhr.runtimeError) {
            throw new Error(`${url}: ${lhr.runtimeError.code}: ${lhr.runtimeError.message}`);
        }
        const scores = {};
        const failing = {};
        for (const id of CATEGORIES) {
            scores[id] = lhr.categories[id].score;
            if (id !== 'performance') {
                const list = failingAudits(lhr, id);
                if (list.length) failing[id] = list;
            }
        }
        emit({ type: 'page', path, lighthouse: lhr.lighthouseVersion,
               userAgent: lhr.environment.hostUserAgent, scores, failing });
        process.stderr.write(`${path.padEnd(24)} `
            + CATEGORIES.map((id) => `${id} ${scores[id] === null ? '-' : scores[id].toFixed(2)}`)
                .join('  ') + '\n');
        for (const [id, list] of Object.entries(failing)) {
            for (const a of list) {
                process.stderr.write(`    ${id}: ${a.id} (${a.title}) ${a.score}\n`);
            }
        }
    }
    emit({ type: 'done', pages: pages.length });
} catch (e) {
    process.stderr.write(`lighthouse.mjs: ${e.stack || e}\n`);
    status = 1;
} finally {
    clearTimeout(fence);
    if (chrome) {
        chrome.child.kill('SIGTERM');
        await Promise.race([chrome.exited, sleep(5000)]);
        if (chrome.child.exitCode === null) chrome.child.kill('SIGKILL');
    }
    rmSync(profile, { recursive: true, force: true });
}
process.exit(status);

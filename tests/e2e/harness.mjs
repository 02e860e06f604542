// Shared pieces of the browser tests and the browser benchmark: a static server for the built
// site (target/site, from `./build.sh site`), Debian's Chromium through playwright-core, sample
// HAM10000 images from the validation split, and the native CLI's results for them.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { extname, join, normalize, resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const ROOT = resolve(import.meta.dirname, '../..');
export const SITE = process.env.DERMSCREEN_SITE ?? join(ROOT, 'target/site');
export const DATA = resolve(ROOT, process.env.DERMSCREEN_DATA ?? '../shared/data/ham10000');
export const CLI = resolve(ROOT, process.env.DERMSCREEN_CLI ?? 'target/debug/dermscreen');
export const OUT = join(ROOT, 'target/e2e');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Median of a list of timings (the upper middle one for an even count). */
export const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

/** Largest difference allowed between a probability in the browser and in the native CLI. */
export const PARITY_TOLERANCE = 1e-3;

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.wasm': 'application/wasm', '.webmanifest': 'application/manifest+json',
  '.png': 'image/png', '.svg': 'image/svg+xml', '.jpg': 'image/jpeg', '.bpk': 'application/octet-stream',
  '.onnx': 'application/octet-stream',
};

/**
 * Serves the site on an ephemeral localhost port (a secure context, as service workers and the
 * camera need). `/__samples/NAME` serves HAM10000 images to the tests only; the site never sees
 * them. `routes` maps further URL prefixes (`/__ort/`) to folders, for the bench. Like
 * `./build.sh serve` and most static hosts, it lets pages on other origins load what it serves
 * (`cors`), so the element can be embedded from it, and sends validators (ETag,
 * Last-Modified), answering a request that names the current one with 304 and no body.
 * `asked` lists the paths requested, in order; `sent` counts, per path, the responses that
 * carried the file.
 */
export async function serveSite(root = SITE, routes = {}, { cors = true } = {}) {
  const allow = cors ? { 'access-control-allow-origin': '*' } : {};
  const folders = { '/__samples/': join(DATA, 'images'), ...routes };
  const sent = {};
  const asked = [];
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    asked.push(path);
    // normalize() keeps a leading ../ only; dropping it keeps every request inside its folder.
    const inside = (dir, rel) => join(dir, normalize(rel).replace(/^(\.\.[/\\])+/, ''));
    const prefix = Object.keys(folders).find((p) => path.startsWith(p));
    const file = prefix
      ? inside(folders[prefix], path.slice(prefix.length))
      : join(inside(root, path), path.endsWith('/') ? 'index.html' : '');
    try {
      const info = await stat(file);
      if (!info.isFile()) throw new Error('not a file');
      // (The ETag changes with a rewrite within the same second, which Last-Modified cannot show.)
      const validators = { etag: `"${info.size.toString(16)}-${info.mtimeMs.toString(16)}"`, 'last-modified': info.mtime.toUTCString() };
      if (req.headers['if-none-match'] === validators.etag) {
        res.writeHead(304, { ...validators, ...allow });
        res.end();
        return;
      }
      const body = await readFile(file);
      sent[path] = (sent[path] ?? 0) + 1;
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': body.length, ...validators, ...allow });
      res.end(body);
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain', ...allow });
      res.end('not found');
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${server.address().port}`, asked, sent };
}

const QUIET = ['--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
  '--disable-quic', '--disable-default-apps'];

/**
 * Launches headless Chromium. `webgpu`: with --enable-unsafe-webgpu (headless Chromium here then
 * offers a SwiftShader adapter); without it the browser has no WebGPU, as on many phones.
 * `fakeCamera`: a synthetic camera that the page may use without a prompt. `wasmPages`: the most
 * memory a wasm module may have, in 64 KiB pages (V8's limit), as a phone gives a page less.
 */
export function launch({ webgpu = true, fakeCamera = false, wasmPages = null } = {}) {
  const args = [...QUIET];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  if (fakeCamera) args.push('--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream');
  if (wasmPages) args.push(`--js-flags=--wasm-max-mem-pages=${wasmPages}`);
  return chromium.launch({ executablePath: CHROMIUM, args });
}

/** HAM10000 validation images, one per diagnosis, read from the split that shipped with the model. */
export function sampleImages(perClass = 1) {
  const lines = readFileSync(join(ROOT, 'model/validation_split.csv'), 'utf8').trim().split('\n');
  const header = lines[0].split(',');
  const [ii, di, si] = ['image', 'dx', 'source'].map((c) => header.indexOf(c));
  const seen = new Map();
  const picked = [];
  for (const line of lines.slice(1)) {
    const cols = line.split(',');
    // HAM10000 photos only: the tests read them from DERMSCREEN_DATA's images/ folder.
    if (cols[si] !== 'ham10000') continue;
    const n = seen.get(cols[di]) ?? 0;
    if (n < perClass) {
      seen.set(cols[di], n + 1);
      const file = cols[ii].split('/').pop();
      picked.push({ image: file.replace(/\.[^.]+$/, ''), dx: cols[di], file });
    }
  }
  return picked;
}

/** The first validation photo of `source` in the shipped split, relative to the data root. */
export function validationPhoto(source) {
  const lines = readFileSync(join(ROOT, 'model/validation_split.csv'), 'utf8').trim().split('\n');
  const header = lines[0].split(',');
  const [ii, si] = [header.indexOf('image'), header.indexOf('source')];
  const row = lines.slice(1).map((l) => l.split(',')).find((cols) => cols[si] === source);
  if (!row) throw new Error(`no ${source} photo in model/validation_split.csv`);
  return row[ii];
}

/** The native CLI's `classify --format json` rows for these images, keyed by image id. */
export function cliResults(samples) {
  const paths = samples.map((s) => join(DATA, 'images', s.file));
  const out = execFileSync(CLI, ['classify', '--format', 'json', '--model', join(ROOT, 'model'), ...paths], { encoding: 'utf8' });
  return new Map(JSON.parse(out).map((r) => [r.image, r]));
}

/**
 * Largest absolute difference over the lesion score and every class and node probability of two
 * results; Infinity when their gates differ.
 */
export function maxDiff(a, b) {
  if (a.gate !== b.gate) return Infinity;
  let worst = Math.abs(a.lesion_score - b.lesion_score);
  if (a.gate !== 'ok') return worst;
  const probs = (r) => new Map([...r.classes, ...r.nodes].map((c) => [c.id, c.probability]));
  const [pa, pb] = [probs(a), probs(b)];
  worst = Math.max(worst, Math.abs(a.malignant - b.malignant));
  for (const [id, p] of pa) {
    if (!pb.has(id)) return Infinity;
    worst = Math.max(worst, Math.abs(p - pb.get(id)));
  }
  return pa.size === pb.size ? worst : Infinity;
}

/**
 * Opens the app (optionally on one backend) and waits until the element is ready. `ready` holds
 * what the element's `ready` gave: the backend, why it was chosen, timings and `model` (the
 * model's info, as the page has it).
 */
export async function openApp(context, url, { backend, path = '/' } = {}) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  await page.goto(`${url}${path}${backend ? `?backend=${backend}` : ''}`);
  const ready = await page.evaluate(async () => {
    // The module may still be loading: before the element is defined, `ready` is undefined.
    await customElements.whenDefined('derm-screen');
    const el = document.querySelector('derm-screen');
    const r = await el.ready;
    return { backend: r.backend, backendReason: r.backendReason, fallbackReason: r.fallbackReason, loadMs: r.loadMs, warmUpMs: r.warmUpMs, model: r.model };
  });
  return { page, ready, problems };
}

/** Classifies a sample image through the element's API; returns the result and the time taken. */
export function classifyInPage(page, file) {
  return page.evaluate(async (file) => {
    const el = document.querySelector('derm-screen');
    const blob = await (await fetch(`/__samples/${file}`)).blob();
    const result = await el.classify(blob, file);
    return { result, ms: el.lastTiming.ms };
  }, file);
}

// How long a test waits for an element's event: far beyond any check here, which take seconds
// at most on CI's two cores.
const EVENT_WAIT_MS = 120_000;

/**
 * Listens for the element's next event of one of `types` (`dermscreen:result`, ...). Resolves
 * once the listener is on the page, to a function that resolves to `{ type, detail, at }` (`at`:
 * the page's clock). Await it before the action that causes the event: Playwright can deliver
 * the action's input before a pending evaluate has run, and the element answers some input
 * (text pasted, a refusal) within the input's own task, so a listener added alongside the action
 * can miss its event and wait forever.
 */
export async function armEvents(page, types) {
  const key = await page.evaluate((types) => {
    const el = document.querySelector('derm-screen');
    const armed = (window.__armed ??= { next: 0, waiting: new Map() });
    const key = armed.next++;
    armed.waiting.set(key, new Promise((resolve) => {
      const listener = (e) => {
        for (const t of types) el.removeEventListener(t, listener);
        resolve({ type: e.type, detail: e.detail, at: performance.now() });
      };
      for (const t of types) el.addEventListener(t, listener);
    }));
    return key;
  }, types);
  const event = () => page.evaluate((key) => {
    const waiting = window.__armed.waiting.get(key);
    window.__armed.waiting.delete(key);
    return waiting;
  }, key);
  // An event that never comes fails the test, rather than holding the run until CI's limit.
  return async () => {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${types.join(' or ')} event within ${EVENT_WAIT_MS / 1000} s`)), EVENT_WAIT_MS);
    });
    try {
      return await Promise.race([event(), late]);
    } finally {
      clearTimeout(timer);
    }
  };
}

/**
 * Listens for the element's next `dermscreen:result` event (see `armEvents`); resolves to a
 * function that resolves to the event's `detail` and page time, `{ detail, at }`.
 */
export async function armResult(page) {
  const next = await armEvents(page, ['dermscreen:result']);
  return async () => { const { detail, at } = await next(); return { detail, at }; };
}

/**
 * Listens for what the element's next check ends in (see `armEvents`); resolves to a function
 * that resolves to `{ result }` (a `dermscreen:result` event's detail) or `{ error }` (a
 * `dermscreen:error` event's message).
 */
export async function armOutcome(page) {
  const next = await armEvents(page, ['dermscreen:result', 'dermscreen:error']);
  return async () => {
    const { type, detail } = await next();
    return type === 'dermscreen:result' ? { result: detail } : { error: detail.message };
  };
}

/**
 * Counts WebGPU API calls in every page of `context` (`window.__gpuCalls`), from before the
 * page's own scripts run: pipeline, shader and buffer creation, bind groups, dispatches,
 * submits, buffer writes and reads.
 */
export function countGpuCalls(context) {
  return context.addInitScript(() => {
    const counts = {};
    window.__gpuCalls = counts;
    const wrap = (proto, names) => {
      for (const name of names) {
        const f = proto?.[name];
        if (typeof f !== 'function') continue;
        proto[name] = function counted(...args) { counts[name] = (counts[name] ?? 0) + 1; return f.apply(this, args); };
      }
    };
    wrap(globalThis.GPUDevice?.prototype, ['createComputePipeline', 'createComputePipelineAsync', 'createShaderModule', 'createBuffer', 'createBindGroup']);
    wrap(globalThis.GPUQueue?.prototype, ['submit', 'writeBuffer']);
    wrap(globalThis.GPUBuffer?.prototype, ['mapAsync']);
    wrap(globalThis.GPUComputePassEncoder?.prototype, ['dispatchWorkgroups']);
  });
}

/** The WebGPU calls (by name, non-zero only) one classification of a sample image makes. */
export function gpuCallsFor(page, file) {
  return page.evaluate(async (file) => {
    const el = document.querySelector('derm-screen');
    const blob = await (await fetch(`/__samples/${file}`)).blob();
    const before = { ...window.__gpuCalls };
    await el.classify(blob, file);
    return Object.fromEntries(Object.entries(window.__gpuCalls)
      .map(([k, v]) => [k, v - (before[k] ?? 0)]).filter(([, v]) => v > 0));
  }, file);
}

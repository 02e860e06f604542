// End-to-end tests of the web app as a user meets it, in Debian's headless Chromium:
// the page loads the shipped model, classifies photos chosen through the UI, matches the native
// CLI on both backends, refuses bad files without losing the last result, handles a missing and a
// working camera, works offline after the first visit, and runs embedded in a host page, on its
// origin and from another, under a strict CSP. Screenshots go to target/e2e/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { crc32, deflateSync } from 'node:zlib';
import { basename, dirname, extname, join } from 'node:path';
import {
  CLI, DATA, OUT, PARITY_TOLERANCE, ROOT, SITE, armEvents, armOutcome, armResult, classifyInPage, cliResults, countGpuCalls, gpuCallsFor,
  launch, maxDiff, openApp, sampleImages, serveSite, validationPhoto,
} from './harness.mjs';
import { openComparison, parity } from './onnx_compare.mjs';
import axe from 'axe-core';

mkdirSync(OUT, { recursive: true });
const samples = sampleImages(1);
let site;
let cli;

before(async () => {
  site = await serveSite();
  cli = cliResults(samples);
});
after(() => site.server.close());

/** A PNG of `width` x `height` at `bitDepth` bits, colour type `colourType`, around `idat`. */
function png(width, height, bitDepth, colourType, idat) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type), data])));
    return Buffer.concat([len, Buffer.from(type), data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4); ihdr[8] = bitDepth; ihdr[9] = colourType;
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(idat)), chunk('IEND', Buffer.alloc(0))]);
}
/**
 * A PNG whose header claims `width` x `height` at `bitDepth` bits (colour type 2 RGB or 6 RGBA),
 * with a token of image data: refused from its header.
 */
function pngHeader(width, height, { bitDepth = 8, colourType = 2 } = {}) {
  return png(width, height, bitDepth, colourType, Buffer.alloc(4096));
}
/** A valid `width` x `height` PNG of one colour. */
function solidPng(width, height, rgb) {
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => rgb).flat())]);
  return png(width, height, 8, 2, Buffer.concat(Array.from({ length: height }, () => row)));
}
/** The JPEG with its frame header (SOF0-SOF2) edited to claim `width` x `height`. */
function jpegClaiming(path, width, height) {
  const b = Buffer.from(readFileSync(path));
  for (let at = 2; at + 4 <= b.length && b[at] === 0xff; at += 2 + b.readUInt16BE(at + 2)) {
    if (b[at + 1] >= 0xc0 && b[at + 1] <= 0xc2) {
      b.writeUInt16BE(height, at + 5); b.writeUInt16BE(width, at + 7);
      return b;
    }
  }
  throw new Error(`${path}: no frame header`);
}
/** The first half of a file: a photo cut off in transfer. */
const halfOf = (path) => { const b = readFileSync(path); return b.subarray(0, b.length >> 1); };
const fileInput = (page) => page.locator('derm-screen input[type=file]');

/** axe-core's violations on the page, one line each (rule, what it asks, where), shadow DOM included. */
async function axeViolations(page) {
  await page.evaluate(axe.source); // through DevTools, so the page's CSP does not block it
  return page.evaluate(async () => (await window.axe.run(document)).violations
    .flatMap((v) => v.nodes.map((n) => `${v.id} (${v.help}): ${n.target.flat().join(' >> ')}`)));
}

/**
 * In the page (through `page.evaluate` or `page.addInitScript`): records in `window.__watch`
 * each frame drawn, each long task, and `paintedBefore(at, until)`, which is, for a text shown
 * at `at`, the longest task still running after it and before `until` (the task that showed it
 * counts), with the frames drawn in between: none means the text was not on screen while the
 * page was busy.
 */
function startWatch() {
  const w = window.__watch = { frames: [], long: [], running: true };
  new PerformanceObserver((l) => { for (const e of l.getEntries()) w.long.push({ start: e.startTime, ms: e.duration }); })
    .observe({ type: 'longtask' });
  const loop = () => { w.frames.push(performance.now()); if (w.running) requestAnimationFrame(loop); };
  requestAnimationFrame(loop);
  w.paintedBefore = (at, until = Infinity) => {
    const busy = w.long.filter((t) => t.start + t.ms > at && t.start < until).sort((a, b) => b.ms - a.ms)[0];
    return { busy, paintedBetween: w.frames.filter((t) => t > at && t < busy?.start).length };
  };
}

/** Starts watching for the moment the text of `selector` in the element first matches `pattern`. */
async function watchPaint(page, selector, pattern) {
  await page.evaluate(startWatch);
  await page.evaluate(async ([sel, source]) => {
    const root = document.querySelector('derm-screen').shadowRoot;
    new MutationObserver(() => { window.__watch.changed ??= new RegExp(source).test(root.querySelector(sel)?.textContent ?? '') ? performance.now() : null; })
      .observe(root, { childList: true, characterData: true, subtree: true });
    await new Promise((resolve) => setTimeout(resolve, 300)); // frames at the page's steady pace
  }, [selector, pattern.source]);
}

/** `{ changed, busy, paintedBetween }` for the text `watchPaint` watched (see `startWatch`). */
function paintedBeforeBusy(page) {
  return page.evaluate(async () => {
    await new Promise((resolve) => setTimeout(resolve, 200)); // a long task is reported after it ends
    const w = window.__watch;
    w.running = false;
    return { changed: w.changed, ...w.paintedBefore(w.changed) };
  });
}
/**
 * In the page: each text on screen whose contrast with what is behind it is under WCAG's
 * 4.5:1 (3:1 for large text), as `what "text": ratio`. On the app page it reads the page and the
 * element; on a host page only the element, whose colours are its own. A text's background is
 * the first opaque one under it, up through the shadow root to the page (white where none is).
 * Not read: the camera's preview (white on the video) and inactive buttons (WCAG exempts them).
 */
function lowContrast() {
  const channels = (css) => css.match(/[\d.]+/g).map(Number);
  const luminance = (rgb) => {
    const [r, g, b] = rgb.slice(0, 3).map((v) => { const c = v / 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const behind = (el) => {
    for (let e = el; e; e = e.parentElement ?? e.getRootNode().host) {
      const c = channels(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0.5) return c;
    }
    return [255, 255, 255];
  };
  const host = document.querySelector('derm-screen');
  const roots = [host.shadowRoot, ...(document.body.querySelector('.warning') ? [document.body] : [])];
  const low = [];
  for (const el of roots.flatMap((r) => [...r.querySelectorAll('*')])) {
    const text = [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.textContent).join('').trim();
    const box = el.getBoundingClientRect();
    if (!text || box.width <= 1 || box.height <= 1 || !el.checkVisibility({ visibilityProperty: true })) continue;
    if (el.closest('.camera, [aria-disabled=true], script, style')) continue;
    const style = getComputedStyle(el);
    const [fg, bg] = [luminance(channels(style.color)), luminance(behind(el))];
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) low.push(`${el.tagName.toLowerCase()}.${el.className} "${text.slice(0, 30)}": ${ratio.toFixed(2)}`);
  }
  return low;
}
const resultText = (page) => page.locator('derm-screen .result').innerText();

describe('with WebGPU (headless Chromium with --enable-unsafe-webgpu)', () => {
  let browser;
  before(async () => { browser = await launch({ webgpu: true }); });
  after(() => browser.close());

  test('loads, picks the faster backend, and classifies a photo chosen with the file picker', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 }, deviceScaleFactor: 2 });
    const { page, ready, problems } = await openApp(context, site.url);
    // This Chromium's only adapter is SwiftShader (software): auto then prefers the CPU and says why.
    if (ready.backend === 'cpu') {
      assert.match(ready.fallbackReason, /software emulation/);
      await page.locator('derm-screen .status').getByText('processor (CPU) (the only WebGPU adapter is a software emulation').waitFor();
    } else {
      await page.locator('derm-screen .status').getByText('WebGPU').waitFor();
    }
    const s = samples.find((x) => x.dx === 'mel');
    const event = await armResult(page);
    await fileInput(page).setInputFiles(join(DATA, 'images', s.file));
    const { detail, at } = await event();
    const shown = await resultText(page);
    assert.match(shown, /(Higher|Lower) risk: \d+(\.\d)?% chance this is malignant/);
    assert.match(shown, new RegExp(`${Math.round(100 * detail.malignant)}%`));
    const top = [...detail.classes].sort((a, b) => b.probability - a.probability)[0];
    assert.ok(shown.includes(top.name), `top diagnosis ${top.name} shown`);
    if (detail.high_risk) assert.match(shown, /See a dermatologist/);
    assert.equal(shown.includes('The model is unsure'), detail.unsure, 'the unsure note exactly when the result says so');
    assert.equal(detail.image, s.image);
    assert.ok(maxDiff(detail, cli.get(s.image)) <= PARITY_TOLERANCE);
    // Screen readers are told the risk in a status region (what they hear: the screen-reader test).
    await page.waitForFunction(() => /risk: \d+% chance this is malignant/
      .test(document.querySelector('derm-screen').shadowRoot.querySelector('.answer-said[role=status]').textContent));
    await page.locator('derm-screen details.tree summary').click();
    await page.screenshot({ path: join(OUT, 'phone-360-result.png'), fullPage: true });
    writeFileSync(join(OUT, 'first-result.json'), JSON.stringify({ backend: ready.backend, loadMs: ready.loadMs, warmUpMs: ready.warmUpMs, pageLoadToFirstResultMs: at }, null, 2));
    assert.deepEqual(problems, []);
    await context.close();
  });

  for (const backend of ['webgpu', 'cpu']) {
    test(`${backend}: browser results equal the native CLI within ${PARITY_TOLERANCE} for one image of each diagnosis`, async () => {
      const context = await browser.newContext();
      const { page, ready } = await openApp(context, site.url, { backend });
      assert.equal(ready.backend, backend);
      let worst = 0;
      for (const s of samples) {
        const { result } = await classifyInPage(page, s.file);
        const d = maxDiff(result, cli.get(s.image));
        worst = Math.max(worst, d);
        assert.ok(d <= PARITY_TOLERANCE, `${s.image} (${s.dx}): differs from the CLI by ${d}`);
        assert.equal(result.unsure, cli.get(s.image).unsure, `${s.image}: unsure as the CLI says`);
      }
      console.log(`# ${backend}: largest difference from the CLI over ${samples.length} images: ${worst.toExponential(2)}`);
      await context.close();
    });
  }

  // The 48 and 50 megapixel modes of phone cameras: such a photo is classified (not refused as
  // too large), as its small original is, and the page shows the result.
  test('a 50 megapixel phone photo is classified as its small original is', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 } });
    const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
    const r = await page.evaluate(async (file) => {
      const el = document.querySelector('derm-screen');
      const original = await (await fetch(`/__samples/${file}`)).blob();
      const canvas = new OffscreenCanvas(8160, 6120);
      canvas.getContext('2d').drawImage(await createImageBitmap(original), 0, 0, canvas.width, canvas.height);
      const photo = await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.9 });
      const small = await el.classify(original, 'original.jpg');
      const start = performance.now();
      const big = await el.classify(photo, 'IMG_50MP.jpg');
      const ms = performance.now() - start;
      const wasmBytes = (await import('./engine.js')).wasmMemoryBytes();
      return { small: small.malignant, big: big.malignant, gate: big.gate, bytes: photo.size, ms, wasmBytes };
    }, samples[0].file);
    console.log(`# 50 MP JPEG (${r.bytes} bytes): ${r.ms.toFixed(0)} ms; wasm memory after it ${r.wasmBytes} bytes; malignant ${r.big} against ${r.small}`);
    assert.equal(r.gate, 'ok');
    assert.ok(Math.abs(r.big - r.small) < 0.05, `50 MP ${r.big}, original ${r.small}`);
    // The page keeps its wasm memory at its peak: the decoded photo (150 MB) and no copy of it.
    assert.ok(r.wasmBytes <= 220e6, `wasm memory ${r.wasmBytes} bytes after a 50 MP photo`);
    assert.match(await resultText(page), /chance this is malignant/);
    assert.deepEqual(problems, []);
    await context.close();
  });

  // Decoding a big photo holds the page's thread (about 0.25 s for 12 MP here, seconds on a
  // phone): what the person sees during it must already say that the photo is being checked.
  test('a big photo chosen: "Checking" is on screen before the page is busy decoding it', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 } });
    const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
    await page.evaluate(async (file) => {
      const original = await (await fetch(`/__samples/${file}`)).blob();
      const canvas = new OffscreenCanvas(4000, 3000);
      canvas.getContext('2d').drawImage(await createImageBitmap(original), 0, 0, canvas.width, canvas.height);
      window.__photo = new File([await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.9 })], 'IMG_12MP.jpg', { type: 'image/jpeg' });
    }, samples[0].file);
    await watchPaint(page, '.status-text', /Checking/);
    await page.evaluate(async () => {
      const el = document.querySelector('derm-screen');
      const done = new Promise((resolve) => el.addEventListener('dermscreen:result', resolve, { once: true }));
      // As a person's choice arrives: the picker's files and its change event.
      const input = el.shadowRoot.querySelector('input[type=file]');
      const picked = new DataTransfer();
      picked.items.add(window.__photo);
      input.files = picked.files;
      input.dispatchEvent(new Event('change'));
      await done;
    });
    const r = await paintedBeforeBusy(page);
    assert.ok(r.busy && r.busy.ms > 100, `a long task follows the choice (${JSON.stringify(r.busy)})`);
    console.log(`# 12 MP photo chosen: the page was busy ${Math.round(r.busy.ms)} ms, ${Math.round(r.busy.start - r.changed)} ms after "Checking"`);
    assert.ok(r.paintedBetween > 0, `no frame was drawn between "Checking" (${r.changed.toFixed(1)} ms) and the ${Math.round(r.busy.ms)} ms task at ${r.busy.start.toFixed(1)} ms`);
    assert.deepEqual(problems, []);
    await context.close();
  });

  // Starting the engine and warming it up each hold the page's thread (about 0.05 and 0.15 s
  // here, more on a phone): the status line names each step before it, rather than still
  // saying "Downloading" through both.
  test('loading: "Starting" and "Preparing" are on screen before the steps that hold the page', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.addInitScript(startWatch);
    await page.addInitScript(() => {
      const status = window.__watch.status = [];
      // The element's shadow root exists once its module has run: its status line is watched from then.
      const find = setInterval(() => {
        const text = document.querySelector('derm-screen')?.shadowRoot?.querySelector('.status-text');
        if (!text) return;
        clearInterval(find);
        new MutationObserver(() => status.push({ at: performance.now(), text: text.textContent }))
          .observe(text, { childList: true, characterData: true, subtree: true });
      }, 1);
    });
    await page.goto(`${site.url}/?backend=cpu`);
    const steps = await page.evaluate(async () => {
      await customElements.whenDefined('derm-screen');
      await document.querySelector('derm-screen').ready;
      await new Promise((resolve) => setTimeout(resolve, 200)); // a long task is reported after it ends
      const w = window.__watch;
      w.running = false;
      return ['Starting the classifier', 'Preparing the classifier'].map((words) => {
        const shown = w.status.find((s) => s.text.startsWith(words))?.at;
        const next = w.status.find((s) => s.at > shown && !s.text.startsWith(words))?.at;
        return { words, shown, ...w.paintedBefore(shown, next) };
      });
    });
    for (const s of steps) {
      assert.ok(s.shown !== undefined, `"${s.words}" is shown during the load`);
      if (s.busy) assert.ok(s.paintedBetween > 0, `"${s.words}" was not drawn before the ${Math.round(s.busy.ms)} ms task that followed it`);
    }
    assert.ok(steps.some((s) => s.busy), `a step of the load holds the page here (${JSON.stringify(steps)})`);
    await context.close();
  });

  test('bad files get a clear message and the last result stays', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 } });
    const { page } = await openApp(context, site.url);
    await fileInput(page).setInputFiles(join(DATA, 'images', samples[0].file));
    await page.locator('derm-screen .result').waitFor();
    const before = await resultText(page);
    const errors = [];
    const bigFile = join(mkdtempSync(join(tmpdir(), 'dermscreen-big-')), 'scan-64mb.jpg');
    writeFileSync(bigFile, Buffer.concat([readFileSync(join(DATA, 'images', samples[0].file)), Buffer.alloc(64e6)]));
    await page.exposeFunction('recordError', (d) => errors.push(d));
    await page.evaluate(() => document.querySelector('derm-screen').addEventListener('dermscreen:error', (e) => window.recordError(e.detail)));
    const cases = [
      { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a photo'), expect: /not a supported image/ },
      { name: 'empty.jpg', mimeType: 'image/jpeg', buffer: Buffer.alloc(0), expect: /empty file/ },
      { name: 'cut.jpg', mimeType: 'image/jpeg', buffer: halfOf(join(DATA, 'images', samples[1].file)), expect: /corrupt or truncated/ },
      { name: 'huge.png', mimeType: 'image/png', buffer: pngHeader(9000, 6000), expect: /too large: 9000x6000 px/ },
      // Once classified ("malignant 94.7%") from a mostly blank canvas.
      { name: 'claims-6000.jpg', mimeType: 'image/jpeg', buffer: jpegClaiming(join(DATA, 'images', samples[2].file), 6000, 6000), expect: /header declares 6000x6000 px but its data ends/ },
      { name: 'absurd.png', mimeType: 'image/png', buffer: pngHeader(2147483647, 2147483647), expect: /too large: 2147483647x2147483647 px/ },
      { name: 'deep.png', mimeType: 'image/png', buffer: pngHeader(6324, 6324, { bitDepth: 16, colourType: 6 }), expect: /6324x6324 px needs 320 MB to decode/ },
      { name: 'anim.gif', mimeType: 'image/gif', buffer: Buffer.concat([Buffer.from('GIF89a'), Buffer.alloc(64)]), expect: /GIF is not supported: save it as JPEG or PNG/ },
      { name: 'dot.png', mimeType: 'image/png', buffer: Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64'), expect: /too small: 1x1/ },
      // Refused by its size before it is read (a file over 50 MB goes to the page by its path).
      { path: bigFile, expect: /scan-64mb\.jpg: The file is 64\.0 MB; choose a photo under 60 MB\. Try/ },
    ];
    for (const c of cases) {
      await fileInput(page).setInputFiles(c.path ?? { name: c.name, mimeType: c.mimeType, buffer: c.buffer });
      const alert = page.locator('derm-screen .error');
      await alert.getByText(basename(c.path ?? c.name)).waitFor();
      assert.match(await alert.innerText(), c.expect);
      assert.doesNotMatch(await alert.innerText(), /\.\./, 'one sentence ends once');
      assert.equal(await resultText(page), before, 'the previous result is still shown');
    }
    assert.equal(errors.length, cases.length);
    assert.ok(errors.every((e) => e.kind === 'input'));
    await page.screenshot({ path: join(OUT, 'phone-360-bad-file.png'), fullPage: true });
    await context.close();
    rmSync(dirname(bigFile), { recursive: true, force: true });
  });

  // What the Rust panic hook reports (src/web.rs), called as it calls it: no input is known to
  // panic, and one that did would be fixed, not kept as a test.
  test('the engine crashed: a photo chosen then is not blamed, the page says to reload, the last result stays', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 } });
    const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
    await fileInput(page).setInputFiles(join(DATA, 'images', samples[0].file));
    await page.locator('derm-screen .result').waitFor();
    const before = await resultText(page);
    await page.evaluate(() => globalThis.__dermscreenPanic('panicked at src/example.rs:1:1'));
    const outcome = await armOutcome(page);
    await fileInput(page).setInputFiles(join(DATA, 'images', samples[1].file));
    const { error } = await outcome();
    assert.match(error, /^The classifier crashed earlier \(panicked at src\/example\.rs:1:1\)\. Reload the page\.$/);
    assert.equal(await page.locator('derm-screen .error').innerText(), error);
    assert.match(await page.locator('derm-screen .status').innerText(), /^The classifier stopped working, so .+ was not checked\.$/);
    assert.equal(await resultText(page), before, 'the previous result is still shown');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('the WebGPU backend, chosen explicitly, runs through the UI', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const { page, ready, problems } = await openApp(context, site.url, { backend: 'webgpu' });
    assert.equal(ready.backend, 'webgpu');
    await page.locator('derm-screen .status').getByText('WebGPU').waitFor();
    const s = samples.find((x) => x.dx === 'akiec');
    await fileInput(page).setInputFiles(join(DATA, 'images', s.file));
    await page.locator('derm-screen .status').getByText('(WebGPU)').waitFor();
    await page.screenshot({ path: join(OUT, 'desktop-webgpu-result.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await context.close();
  });

  // A phone's browser can take the graphics chip back (the GPU process restarted, memory ran
  // short in the background): the photo is still checked, on the CPU, and so are the next ones.
  test('WebGPU lost after loading: the photo is checked on the CPU as the CLI checks it, and the page says why', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.addInitScript(() => {
      const requestDevice = GPUAdapter.prototype.requestDevice;
      GPUAdapter.prototype.requestDevice = async function kept(...args) {
        const device = await requestDevice.apply(this, args);
        (window.__gpuDevices ??= []).push(device);
        return device;
      };
    });
    const { page, ready, problems } = await openApp(context, site.url, { backend: 'webgpu' });
    assert.equal(ready.backend, 'webgpu');
    await page.evaluate(async () => {
      for (const device of window.__gpuDevices) device.destroy();
      await Promise.all(window.__gpuDevices.map((d) => d.lost));
    });
    // The first photo after the loss says why the CPU checked it; the next is checked there too.
    for (const [dx, said] of [['mel', /\(CPU\)\. WebGPU stopped working \(.+\), so the processor checks the photos from now on\.$/], ['nv', /\(CPU\)\.$/]]) {
      const s = samples.find((x) => x.dx === dx);
      const event = await armOutcome(page);
      await fileInput(page).setInputFiles(join(DATA, 'images', s.file));
      const { result, error } = await event();
      assert.equal(error, undefined, `${dx}: ${error}`);
      assert.ok(maxDiff(result, cli.get(s.image)) <= PARITY_TOLERANCE, dx);
      await page.locator('derm-screen .status').getByText('Done').waitFor();
      const status = await page.locator('derm-screen .status').innerText();
      assert.match(status, said);
    }
    const after = await page.evaluate(async () => {
      const el = document.querySelector('derm-screen');
      const r = await el.ready;
      const map = await el.showSaliency();
      return { timing: el.lastTiming.backend, backend: r.backend, reason: r.backendReason, mapSize: map.size };
    });
    assert.deepEqual([after.timing, after.backend], ['cpu', 'cpu']);
    assert.ok(after.mapSize > 0, 'where the model looked is drawn on the CPU too');
    assert.match(after.reason, /WebGPU stopped working/);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('auto measures a hardware adapter against the CPU, keeps the faster and remembers it', async () => {
    const context = await browser.newContext();
    // This Chromium's only adapter is SwiftShader. Presented as hardware, it makes auto measure
    // a WebGPU that is really much slower than the CPU: auto must not keep it.
    await context.addInitScript(() => {
      for (const proto of [globalThis.GPUAdapterInfo?.prototype, globalThis.GPUAdapter?.prototype]) {
        if (proto && 'isFallbackAdapter' in proto) Object.defineProperty(proto, 'isFallbackAdapter', { get: () => false });
      }
    });
    await countGpuCalls(context);
    const first = await openApp(context, site.url);
    assert.equal(first.ready.backend, 'cpu');
    const measured = first.ready.backendReason.match(/^measured here, the CPU is faster: WebGPU ([\d,]+) ms, CPU ([\d,]+) ms per photo$/);
    assert.ok(measured, first.ready.backendReason);
    const [gpuMs, cpuMs] = measured.slice(1).map((x) => Number(x.replace(/,/g, '')));
    assert.ok(cpuMs < gpuMs, `${cpuMs} ms on the CPU, ${gpuMs} ms on WebGPU`);
    writeFileSync(join(OUT, 'auto-choice.json'), `${JSON.stringify({ ...first.ready, model: first.ready.model.name, webgpuMs: gpuMs, cpuMs }, null, 2)}\n`);
    await first.page.locator('derm-screen .status').getByText('measured here, the CPU is faster').waitFor();
    const { result } = await classifyInPage(first.page, samples[0].file);
    assert.ok(maxDiff(result, cli.get(samples[0].image)) <= PARITY_TOLERANCE);
    assert.deepEqual(first.problems, []);
    await first.page.close();
    // The next visit loads only the remembered winner: WebGPU is not even started.
    const again = await openApp(context, site.url);
    assert.equal(again.ready.backend, 'cpu');
    assert.match(again.ready.backendReason, /^chosen earlier on this device by measurement: WebGPU [\d,]+ ms, CPU [\d,]+ ms per photo$/);
    assert.equal(await again.page.evaluate(() => window.__gpuCalls.createComputePipeline ?? 0), 0);
    await context.close();
  });

  test('auto: WebGPU lost while it is measured, or as a remembered choice warms up, is not chosen: the CPU runs, and says why', async () => {
    const context = await browser.newContext();
    await context.addInitScript(() => {
      for (const proto of [globalThis.GPUAdapterInfo?.prototype, globalThis.GPUAdapter?.prototype]) {
        if (proto && 'isFallbackAdapter' in proto) Object.defineProperty(proto, 'isFallbackAdapter', { get: () => false });
      }
      const devices = [];
      const requestDevice = GPUAdapter.prototype.requestDevice;
      GPUAdapter.prototype.requestDevice = async function kept(...args) {
        const device = await requestDevice.apply(this, args);
        devices.push(device);
        return device;
      };
      // The device goes as the status line names the step (`lose-webgpu-at`; a mutation
      // observer's callback runs before the paint the load waits for).
      customElements.whenDefined('derm-screen').then(() => {
        const status = document.querySelector('derm-screen').shadowRoot.querySelector('.status-text');
        new MutationObserver(() => {
          if (status.textContent.startsWith(localStorage.getItem('lose-webgpu-at'))) for (const d of devices) d.destroy();
        }).observe(status, { childList: true, characterData: true, subtree: true });
      });
    });
    const lostReason = /^WebGPU stopped working \(.+\), so the processor checks the photos from now on$/;
    // Lost while the two are timed against each other.
    const setUp = await context.newPage();
    await setUp.goto(`${site.url}/manifest.webmanifest`);
    await setUp.evaluate(() => localStorage.setItem('lose-webgpu-at', 'Measuring'));
    const { page, ready, problems } = await openApp(context, site.url);
    assert.equal(ready.backend, 'cpu');
    assert.match(ready.backendReason, lostReason);
    assert.equal(await page.evaluate(() => localStorage.getItem('dermscreen-backend-choice')), null);
    const { result } = await classifyInPage(page, samples[0].file);
    assert.ok(maxDiff(result, cli.get(samples[0].image)) <= PARITY_TOLERANCE);
    assert.deepEqual(problems, []);
    // A WebGPU remembered as the faster, lost while it warms up on the next visit.
    await page.evaluate((sha) => {
      localStorage.setItem('dermscreen-backend-choice', JSON.stringify({ id: `${sha}|${navigator.userAgent}`, backend: 'webgpu', webgpuMs: 10, cpuMs: 20 }));
      localStorage.setItem('lose-webgpu-at', 'Preparing');
    }, ready.model.weights_sha256);
    const again = await openApp(context, site.url);
    assert.equal(again.ready.backend, 'cpu');
    assert.match(again.ready.backendReason, lostReason);
    assert.deepEqual(again.problems, []);
    await context.close();
  });

  // A guard on the WebGPU path's shape: a change that multiplies dispatches, submits or
  // readbacks, or creates pipelines or buffers per photo, fails here (SwiftShader is enough to
  // count calls, not to time them). Measured here: see target/e2e/webgpu-calls-per-photo.json
  // (64 dispatches and 4 submits since batch norms are folded into the convolutions; 148 and 6
  // before). On a real GPU each dispatch costs the page a bind group and a few calls.
  test('WebGPU calls per photo stay within budget, and nothing is created after the first photo', async () => {
    const budget = { dispatchWorkgroups: 72, createBindGroup: 72, submit: 6, writeBuffer: 2, mapAsync: 1 };
    const context = await browser.newContext();
    await countGpuCalls(context);
    const { page } = await openApp(context, site.url, { backend: 'webgpu' });
    await gpuCallsFor(page, samples[0].file);
    const calls = await gpuCallsFor(page, samples[1].file);
    writeFileSync(join(OUT, 'webgpu-calls-per-photo.json'), `${JSON.stringify(calls, null, 2)}\n`);
    for (const created of ['createComputePipeline', 'createComputePipelineAsync', 'createShaderModule', 'createBuffer']) {
      assert.equal(calls[created] ?? 0, 0, `${created} after the first photo: ${JSON.stringify(calls)}`);
    }
    for (const [name, most] of Object.entries(budget)) {
      assert.ok((calls[name] ?? 0) <= most, `${name}: ${calls[name]} per photo, budget ${most}`);
    }
    assert.ok(calls.dispatchWorkgroups > 0 && calls.mapAsync === 1, JSON.stringify(calls));
    await context.close();
  });

  test('where the model looked: a keyboard toggle overlays the CLI\'s saliency map after the result', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 }, deviceScaleFactor: 2 });
    const { page } = await openApp(context, site.url, { backend: 'cpu' });
    const s = samples.find((x) => x.dx === 'bcc') ?? samples[0];
    const dir = mkdtempSync(join(tmpdir(), 'dermscreen-saliency-'));
    execFileSync(CLI, ['classify', '--model', join(ROOT, 'model'), '--saliency', dir, join(DATA, 'images', s.file)]);
    const result = await armResult(page);
    await fileInput(page).setInputFiles(join(DATA, 'images', s.file));
    await result();
    // The result comes first; the map only when asked.
    assert.equal(await page.locator('derm-screen figure.saliency').count(), 0);
    const toggle = page.locator('derm-screen .saliency-toggle');
    assert.equal(await toggle.getAttribute('aria-pressed'), 'false');
    const event = await armEvents(page, ['dermscreen:saliency']);
    await toggle.focus();
    await watchPaint(page, '.saliency-toggle', /Finding where the model looked/);
    await page.keyboard.press('Enter');
    const { detail } = await event();
    const figure = page.locator('derm-screen figure.saliency');
    await figure.waitFor();
    // The map takes about half a second on the CPU path, holding the page's thread: the button
    // says it is working before that, or the press would look ignored.
    const paint = await paintedBeforeBusy(page);
    assert.ok(paint.busy && paint.busy.ms > 100, `computing the map is a long task here (${JSON.stringify(paint.busy)})`);
    assert.ok(paint.paintedBetween > 0, `"Finding where the model looked" was not drawn before the ${Math.round(paint.busy.ms)} ms task`);
    assert.equal(await toggle.getAttribute('aria-pressed'), 'true');
    // The keyboard's focus stays where Enter was pressed, so Enter again hides the map.
    assert.equal(await page.evaluate(() => document.querySelector('derm-screen').shadowRoot.activeElement?.className),
      'secondary saliency-toggle', 'the focus stays on the toggle while and after the map is computed');
    const words = await figure.innerText();
    for (const part of ['little effect', 'most effect', `Where the model looked for signs of "${detail.name}"`]) {
      assert.ok(words.includes(part), `the figure says ${part}`);
    }
    // The page's overlay equals the CLI's PNG (same Rust code, other backend and build) within 2/255.
    const png = readFileSync(join(dir, `${s.image}.png`)).toString('base64');
    const diff = await page.evaluate(async (b64) => {
      const canvas = document.querySelector('derm-screen').shadowRoot.querySelector('figure.saliency canvas');
      const shown = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.width; c.height = img.height;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const cli = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      let worst = 0;
      for (let i = 0; i < shown.length; i++) worst = Math.max(worst, Math.abs(shown[i] - cli[i]));
      return { worst, side: canvas.width, cliWidth: img.width };
    }, png);
    assert.equal(diff.side, diff.cliWidth);
    assert.ok(diff.worst <= 2, `overlay differs from the CLI's PNG by ${diff.worst}/255`);
    console.log(`# saliency on the CPU backend: ${Math.round(detail.ms)} ms; overlay within ${diff.worst}/255 of the CLI`);
    // Readable at phone width: the figure fits the 360 px screen.
    const box = await figure.boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= 360, `figure spans ${box.x}..${box.x + box.width}`);
    await figure.scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(OUT, 'phone-360-saliency.png'), fullPage: true });
    // Forced colours (Windows high contrast) drop background colours and gradients; the map's
    // colour scale and the probability bars carry data, so they must still show.
    await page.emulateMedia({ forcedColors: 'active' });
    const forced = await page.evaluate(() => {
      const root = document.querySelector('derm-screen').shadowRoot;
      const style = (sel) => getComputedStyle(root.querySelector(sel));
      return { ramp: style('.legend .ramp').backgroundImage, track: style('.bar').backgroundColor,
        fill: style('.bar > span').backgroundColor };
    });
    assert.match(forced.ramp, /linear-gradient/, 'the colour scale keeps its colours in forced colours');
    assert.notEqual(forced.fill, forced.track, 'a probability bar is told apart from its track in forced colours');
    await page.screenshot({ path: join(OUT, 'phone-360-saliency-forced-colors.png'), fullPage: true });
    await page.emulateMedia({ forcedColors: 'none' });
    await page.keyboard.press('Enter');
    assert.equal(await figure.isHidden(), true, 'the toggle hides the map again');
    rmSync(dir, { recursive: true, force: true });
    await context.close();
  });

  // Low vision: text at twice the size (a phone's font setting, or the browser's text zoom) on a
  // 320 px screen must reflow, not run off the side (WCAG 1.4.4 and 1.4.10).
  test('text at twice the size on a 320 px screen: the result, the map, the tree and the form fit its width', async () => {
    const context = await browser.newContext({ viewport: { width: 320, height: 700 } });
    const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
    await page.evaluate(() => { document.documentElement.style.fontSize = '200%'; });
    const result = await armResult(page);
    await fileInput(page).setInputFiles(join(DATA, 'images', samples.find((x) => x.dx === 'vasc')?.file ?? samples[0].file));
    await result();
    await page.locator('derm-screen .saliency-toggle').click();
    await page.locator('derm-screen figure.saliency').waitFor();
    await page.locator('derm-screen details.tree summary').click();
    await page.locator('derm-screen details.context summary').click();
    const over = await page.evaluate(() => {
      const width = document.documentElement.clientWidth;
      const root = document.querySelector('derm-screen').shadowRoot;
      return [...root.querySelectorAll('*')].filter((e) => e.getBoundingClientRect().right > width + 1)
        .map((e) => `${e.tagName.toLowerCase()}.${e.className} (${Math.round(e.getBoundingClientRect().right)} px): ${e.textContent.slice(0, 40)}`);
    });
    assert.deepEqual(over, [], 'nothing in the element runs past the 320 px screen');
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth), true,
      'the page does not scroll sideways');
    // Nor are words broken inside ("maligna nt."): a word drawn on two lines has two boxes.
    // Only one wider than the line it is in has to be (a long diagnosis deep in the tree); the
    // answer, what to do and the buttons keep every word whole.
    const broken = await page.evaluate(() => {
      const root = document.querySelector('derm-screen').shadowRoot;
      const lineOf = (e) => {
        while (getComputedStyle(e).display.startsWith('inline')) e = e.parentElement;
        const s = getComputedStyle(e);
        return e.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
      };
      const words = [];
      const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        if (!n.parentElement?.checkVisibility()) continue;
        const whole = n.parentElement.closest('.risk, .advice, button');
        for (const m of n.textContent.matchAll(/[^\s-]+-?/g)) { // (a break after a hyphen is no break inside)
          const range = document.createRange();
          range.setStart(n, m.index);
          range.setEnd(n, m.index + m[0].length);
          const boxes = [...range.getClientRects()].filter((r) => r.width > 0);
          const width = boxes.reduce((w, r) => w + r.width, 0);
          if (boxes.length > 1 && (whole || width <= lineOf(n.parentElement))) words.push(`${m[0]} (${Math.round(width)} of ${Math.round(lineOf(n.parentElement))} px)`);
        }
      }
      return words;
    });
    assert.deepEqual(broken, [], 'no word broken inside');
    const ticks = await page.evaluate(() => [...document.querySelector('derm-screen').shadowRoot
      .querySelectorAll('.context-form input[type=radio], .context-form input[type=checkbox]')].map((i) => Math.round(i.getBoundingClientRect().width)));
    assert.ok(ticks.length > 0 && ticks.every((w) => w >= 24), `every radio button and check box keeps its size beside a long label: ${ticks}`);
    await page.screenshot({ path: join(OUT, 'phone-320-text-200.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('colours: every text stands out from what is behind it, in light and dark, and on a dark host page that names no colour scheme', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 } });
    const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
    const s = samples.find((x) => x.dx === 'mel') ?? samples[0];
    const gated = solidPng(300, 300, [128, 128, 128]);
    // Everything the element shows at once: a result with the map, the tree and the form open, a
    // refused file, the camera's notice; then a gated photo's answer.
    const showAll = async (p) => {
      let result = await armResult(p);
      await fileInput(p).setInputFiles(join(DATA, 'images', s.file));
      await result();
      await p.locator('derm-screen .saliency-toggle').click();
      await p.locator('derm-screen figure.saliency').waitFor();
      await p.evaluate(() => { for (const d of document.querySelector('derm-screen').shadowRoot.querySelectorAll('details')) d.open = true; });
      await fileInput(p).setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a photo') });
      await p.locator('derm-screen .error').getByText('notes.txt').waitFor();
      await p.locator('derm-screen .start-camera').click();
      await p.locator('derm-screen .camera-notice').waitFor();
      const first = await p.evaluate(lowContrast);
      result = await armResult(p);
      await fileInput(p).setInputFiles({ name: 'grey.png', mimeType: 'image/png', buffer: gated });
      await result();
      return [...first, ...await p.evaluate(lowContrast)];
    };
    const background = (p) => p.evaluate(() => [document.body, document.querySelector('derm-screen')]
      .map((e) => getComputedStyle(e).backgroundColor));

    assert.deepEqual(await showAll(page), [], 'light: every text in the page and the element is legible');
    await page.screenshot({ path: join(OUT, 'phone-360-light.png'), fullPage: true });

    // The phone set to dark: the page and the element follow it.
    await page.emulateMedia({ colorScheme: 'dark' });
    assert.deepEqual(await background(page), ['rgb(21, 24, 28)', 'rgb(21, 24, 28)'], 'dark: the page and the element are dark');
    assert.deepEqual(await showAll(page), [], 'dark: every text in the page and the element is legible');
    await page.screenshot({ path: join(OUT, 'phone-360-dark.png'), fullPage: true });
    assert.deepEqual(problems, []);

    // A host page, dark by its own styles, that names no colour scheme (most do not): the
    // element keeps its light colours on its own background.
    await page.emulateMedia({ colorScheme: 'light' });
    await page.goto(`${site.url}/embed.html`);
    await page.evaluate(() => {
      document.documentElement.style.colorScheme = 'normal';
      Object.assign(document.body.style, { background: '#111', color: '#eee' });
      return document.querySelector('derm-screen').ready;
    });
    assert.deepEqual(await showAll(page), [], 'on a dark host page: every text in the element is legible');
    await page.screenshot({ path: join(OUT, 'desktop-embed-dark-host.png'), fullPage: true });
    await context.close();
  });

  test('printed to show a doctor, from light or dark: the answer with its date in dark text on white, without the controls', async () => {
    const context = await browser.newContext({ viewport: { width: 800, height: 900 } });
    const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
    const result = await armResult(page);
    await fileInput(page).setInputFiles(join(DATA, 'images', samples[0].file));
    await result();
    assert.match(await page.locator('derm-screen .meta').innerText(), /· checked \S.* · model /, 'the result says when it was checked');
    for (const colorScheme of ['light', 'dark']) {
      await page.emulateMedia({ media: 'print', colorScheme });
      const shown = await page.evaluate(() => {
        const root = document.querySelector('derm-screen').shadowRoot;
        const on = (sel) => root.querySelector(sel)?.checkVisibility() ?? false;
        return {
          controls: ['.drop', '.pick', '.saliency-toggle', '.context-slot', '.status'].filter(on),
          answer: ['.result', '.risk', '.top', '.meta', '.tree li'].filter(on).length,
          treeOpen: root.querySelector('details.tree').open,
          text: [document.body, document.querySelector('h1'), root.querySelector('.population'), root.querySelector('.meta')]
            .map((e) => getComputedStyle(e).color),
          risk: getComputedStyle(root.querySelector('.risk')).color,
          bar: getComputedStyle(root.querySelector('.bar > span')).printColorAdjust,
        };
      });
      assert.deepEqual(shown.controls, [], `${colorScheme}: no buttons or drop zone on paper`);
      assert.equal(shown.answer, 5, `${colorScheme}: the answer is printed, every group and diagnosis included`);
      assert.equal(shown.treeOpen, false, 'the tree is printed whole though it is closed on screen');
      // The light colours, whichever the screen showed: dark mode's light text would barely show on paper.
      assert.deepEqual(shown.text, ['rgb(26, 26, 26)', 'rgb(29, 79, 145)', 'rgb(61, 74, 92)', 'rgb(61, 74, 92)'], colorScheme);
      assert.ok(['rgb(163, 21, 21)', 'rgb(27, 94, 32)'].includes(shown.risk), `${colorScheme}: the risk in its light colour, not ${shown.risk}`);
      assert.equal(shown.bar, 'exact', 'the bars are printed, not left as blank tracks');
      await page.screenshot({ path: join(OUT, `desktop-print-from-${colorScheme}.png`), fullPage: true });
    }
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('photos that are not usable get a reason and no risk; lesion photos of every kind get a risk', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 }, deviceScaleFactor: 2 });
    const { page, ready } = await openApp(context, site.url, { backend: 'cpu' });
    const model = ready.model;
    const ood = join(DATA, '..', 'ood', 'images');
    const firstOf = (dir, prefix) => readdirSync(dir).filter((f) => f.startsWith(prefix)).sort()[0];
    const dir = mkdtempSync(join(tmpdir(), 'dermscreen-gate-'));
    writeFileSync(join(dir, 'black.png'), solidPng(300, 300, [0, 0, 0]));
    writeFileSync(join(dir, 'white.png'), solidPng(300, 300, [255, 255, 255]));
    const check = async (path) => {
      const event = await armResult(page);
      await fileInput(page).setInputFiles(path);
      const { detail } = await event();
      return { detail, shown: await resultText(page) };
    };
    for (const [path, gate] of [
      [join(dir, 'black.png'), 'too_dark'],
      [join(dir, 'white.png'), 'overexposed'],
      [join(ood, firstOf(ood, 'bsds_')), 'not_a_skin_spot'],
      [join(ood, firstOf(ood, 'skin_')), 'not_a_skin_spot'], // healthy skin, no spot
    ]) {
      const { detail, shown } = await check(path);
      assert.equal(detail.gate, gate, path);
      assert.equal(detail.malignant, undefined, 'no risk number in the event');
      assert.match(shown, /No risk given for this photo/);
      assert.ok(shown.includes(detail.gate_message));
      assert.doesNotMatch(shown, /%|Lower risk|Higher risk/, 'nothing that reads as a risk or as reassurance');
      assert.equal(await page.locator('derm-screen .saliency-toggle').count(), 0);
      await page.screenshot({ path: join(OUT, `phone-360-gated-${basename(path, extname(path))}.png`), fullPage: true });
    }
    // A heavily blurred lesion, blurred in the page as a shaky hand would.
    const blurred = await page.evaluate(async (file) => {
      const img = new Image();
      img.src = `/__samples/${file}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.width; c.height = img.height;
      const ctx = c.getContext('2d');
      ctx.filter = 'blur(6px)';
      ctx.drawImage(img, 0, 0);
      const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
      return document.querySelector('derm-screen').classify(blob, 'blurred.png');
    }, samples[0].file);
    assert.equal(blurred.gate, 'too_blurry');
    assert.match(await resultText(page), /too blurry to judge/);
    await page.screenshot({ path: join(OUT, 'phone-360-gated-blurred.png'), fullPage: true });
    // A phone photo and a dermoscopic photo the model never trained on: each is taken for its
    // kind, and the page says which kind and which threshold applied.
    for (const [path, domain, words] of [
      [join(dirname(DATA), validationPhoto('pad_ufes_20')), 'clinical', 'Taken for a plain camera (phone) photo'],
      [join(DATA, 'images', samples[1].file), 'dermoscopic', 'Taken for a dermoscopic (through a dermatoscope) photo'],
    ]) {
      const { detail, shown } = await check(path);
      assert.equal(detail.gate, 'ok', path);
      assert.equal(detail.domain, domain, path);
      assert.ok(shown.includes(words), `${path}: ${shown}`);
      assert.match(shown, /(Higher|Lower) risk: \d+(\.\d)?% chance this is malignant/);
      assert.match(shown, /Percentages are for the validation photos of this model's sources/);
      const threshold = Math.round(100 * model.high_risk_thresholds[domain]);
      assert.match(shown, new RegExp(`the flag is raised from ${threshold}(\\.\\d)?%`));
      assert.equal(detail.high_risk, detail.malignant >= model.high_risk_thresholds[domain]);
      assert.equal(shown.includes('The model is unsure'), detail.unsure, `${path}: ${shown}`);
      if (detail.unsure) assert.match(shown, /no diagnosis reaches 50% \(the most likely is /, 'the number the result used');
    }
    rmSync(dir, { recursive: true, force: true });
    await context.close();
  });

  test('optional patient context: the form\'s answers are used and named; cleared, the photo alone counts', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 } });
    const { page, ready } = await openApp(context, site.url, { backend: 'cpu' });
    assert.ok(ready.model.context_fields.includes('bled'), 'the model takes context');
    const photo = join(DATA, 'images', samples[0].file);
    const check = async () => {
      const event = await armResult(page);
      await fileInput(page).setInputFiles(photo);
      return { detail: (await event()).detail, shown: await resultText(page) };
    };
    const plain = await check();
    assert.deepEqual(plain.detail.context_used, []);
    assert.doesNotMatch(plain.shown, /Your answers used/);
    // Nothing required and nothing open until asked; a tap opens it, large targets inside.
    const form = page.locator('derm-screen details.context');
    assert.equal(await form.getAttribute('open'), null);
    await form.locator('summary').click();
    await page.locator('derm-screen input[name=age]').fill('72');
    await page.locator('derm-screen input[name=age]').dispatchEvent('change');
    await page.locator('derm-screen input[name=bled][value=true]').check();
    const box = await page.locator('derm-screen input[name=bled][value=true]').locator('xpath=..').boundingBox();
    assert.ok(box.height >= 44, `answer targets are ${box.height} px high`);
    await page.screenshot({ path: join(OUT, 'phone-360-context-form.png'), fullPage: true });
    const answered = await check();
    assert.deepEqual(answered.detail.context_used, ['age', 'bled']);
    assert.match(answered.shown, /Your answers used: age, bled/);
    assert.ok(Math.abs(answered.detail.malignant - plain.detail.malignant) > 1e-4, 'the answers move the estimate');
    assert.equal(await page.evaluate(() => localStorage.getItem('dermscreen:context')), null, 'nothing remembered unless asked');
    // A typed age the model does not take (720 for 72) is marked in the form and not used; the
    // photo is not judged with the age before it while the form shows the new one.
    const age = page.locator('derm-screen input[name=age]');
    await age.fill('720');
    await age.dispatchEvent('change');
    const note = page.locator('derm-screen .context-form .refused');
    await note.waitFor();
    assert.match(await note.innerText(), /Not used: enter a number from 0 to 120/);
    assert.equal(await age.getAttribute('aria-invalid'), 'true');
    const typo = await check();
    assert.deepEqual(typo.detail.context_used, ['bled'], 'judged without the refused age, not with 72');
    assert.match(typo.shown, /Your answers used: bled\./);
    await age.fill('70');
    await age.dispatchEvent('change');
    await note.waitFor({ state: 'hidden' });
    assert.equal(await age.getAttribute('aria-invalid'), 'false');
    assert.deepEqual((await check()).detail.context_used, ['age', 'bled']);
    await page.locator('derm-screen .context-form .clear').click();
    const cleared = await check();
    assert.deepEqual(cleared.detail.context_used, []);
    assert.equal(cleared.detail.malignant, plain.detail.malignant, 'no answers: the image-only result');
    // The element's method takes the same fields and names a field whose value it refuses.
    const refused = await page.evaluate(() => document.querySelector('derm-screen').setContext({ site: 'elbow' }).then(() => 'accepted', (e) => e.message));
    assert.match(refused, /context field 'site': 'elbow' is not a body site/);
    const used = await page.evaluate(() => document.querySelector('derm-screen').setContext({ age: 40, sex: 'female' }));
    assert.deepEqual(used, ['age', 'sex']);
    assert.equal(await page.locator('derm-screen input[name=sex][value=female]').isChecked(), true, 'the form shows what the method set');
    await context.close();
  });

  test('answers given after a result: the page offers to check that photo again with them, and does', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 } });
    const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
    const offer = page.locator('derm-screen .result .recheck');
    const first = await armResult(page);
    await fileInput(page).setInputFiles(join(DATA, 'images', samples[0].file));
    const plain = (await first()).detail;
    assert.deepEqual(plain.context_used, []);
    assert.equal(await offer.isVisible(), false, 'no offer before any answer');
    // The person reads the result, then opens the form and answers.
    await page.locator('derm-screen details.context summary').click();
    await page.locator('derm-screen input[name=bled][value=true]').check();
    await offer.waitFor();
    assert.match(await offer.innerText(), /Your answers changed since this photo was checked/);
    assert.doesNotMatch(await resultText(page), /Your answers used/, 'the result shown is still the one without answers');
    const again = await armResult(page);
    await offer.getByRole('button', { name: 'Check this photo again with your answers' }).focus();
    await page.keyboard.press('Enter');
    const answered = (await again()).detail;
    assert.deepEqual(answered.context_used, ['bled']);
    assert.equal(answered.image, plain.image, 'the same photo');
    assert.notEqual(answered.malignant, plain.malignant, 'judged with the answer');
    assert.match(await resultText(page), /Your answers used: bled\./);
    assert.equal(await offer.isVisible(), false, 'the offer is gone once the result uses the answers');
    await page.waitForFunction(() => document.querySelector('derm-screen').shadowRoot.activeElement?.className === 'result');
    assert.match(await page.locator('derm-screen .status-text').innerText(), /^Done in \d+ ms/);
    // Back to the answers it was judged with: nothing to offer. A host's setContext counts too.
    await page.locator('derm-screen input[name=bled][value=""]').check();
    await offer.waitFor();
    await page.locator('derm-screen input[name=bled][value=true]').check();
    await offer.waitFor({ state: 'hidden' });
    await page.evaluate(() => document.querySelector('derm-screen').setContext({ bled: true, age: 60 }));
    await offer.waitFor();
    // A photo that got no risk has nothing the answers change.
    const grey = await armResult(page);
    await fileInput(page).setInputFiles({ name: 'grey.png', mimeType: 'image/png', buffer: solidPng(300, 300, [128, 128, 128]) });
    assert.notEqual((await grey()).detail.gate, 'ok');
    await page.locator('derm-screen input[name=grew][value=true]').check();
    assert.equal(await offer.isVisible(), false, 'no offer for a gated photo');
    await page.screenshot({ path: join(OUT, 'phone-360-recheck.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('each element keeps its own patient context, and a photo is judged with the one set when it was sent', async () => {
    const context = await browser.newContext();
    const { page } = await openApp(context, site.url, { backend: 'cpu' });
    const got = await page.evaluate(async (file) => {
      const a = document.querySelector('derm-screen');
      const b = document.createElement('derm-screen'); // a second spot, or a second patient, on one page
      b.setAttribute('backend', 'cpu');
      document.body.append(b);
      await b.ready;
      const photo = new File([await (await fetch(`/__samples/${file}`)).blob()], file, { type: 'image/jpeg' });
      const pick = (r) => ({ malignant: r.malignant, used: r.context_used });
      const plain = pick(await b.classify(photo));
      await a.setContext({ age: 80, bled: true });
      const other = pick(await b.classify(photo));
      const sent = a.classify(photo);
      const cleared = a.setContext({});
      return { plain, other, answered: pick(await sent), after: (await cleared, pick(await a.classify(photo))) };
    }, samples[0].file);
    assert.deepEqual(got.other, got.plain, 'one element\'s answers never reach another\'s photos');
    assert.deepEqual(got.answered.used, ['age', 'bled'], 'judged with the context in force when it was sent');
    assert.deepEqual(got.after, got.plain);
    await context.close();
  });

  test('no camera: the page says so and offers the file picker', async () => {
    const context = await browser.newContext();
    const { page } = await openApp(context, site.url);
    await page.locator('derm-screen .start-camera').click();
    const notice = page.locator('derm-screen .camera-notice');
    await notice.waitFor();
    assert.match(await notice.innerText(), /(No camera was found|Camera access was denied).*choose a photo instead/i);
    assert.equal(await page.evaluate(() => document.querySelector('derm-screen').shadowRoot.activeElement?.className), 'pick');
    await context.close();
  });

  test('keyboard only: Tab reaches the photo picker and Enter opens it', async () => {
    const context = await browser.newContext();
    const { page } = await openApp(context, site.url);
    const chooser = page.waitForEvent('filechooser');
    let reached = false;
    for (let i = 0; i < 8 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => document.querySelector('derm-screen').shadowRoot.activeElement?.className === 'pick');
    }
    assert.ok(reached, 'the picker button is reachable with Tab');
    await page.keyboard.press('Enter');
    const fc = await chooser;
    await fc.setFiles(join(DATA, 'images', samples[2].file));
    await page.locator('derm-screen .result').waitFor();
    await context.close();
  });

  test('a screen reader is told each answer in a sentence, and not again when the map is shown', async () => {
    const context = await browser.newContext();
    const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
    // What a screen reader says unasked: the text of a live region (a status, an alert, or
    // aria-live) each time something inside it changes. They read a status region whole.
    await page.evaluate(() => {
      window.__said = [];
      const live = (n) => (n.nodeType === 1 ? n : n.parentElement)?.closest('[role=status], [role=alert], [aria-live]:not([aria-live=off])');
      new MutationObserver((records) => {
        for (const region of new Set(records.map((r) => live(r.target)).filter(Boolean))) {
          const text = region.textContent.replace(/\s+/g, ' ').trim();
          if (!region.hidden && text) window.__said.push(text);
        }
      }).observe(document.querySelector('derm-screen').shadowRoot, { subtree: true, childList: true, characterData: true });
    });
    const heard = async (pattern) => {
      await page.waitForFunction((p) => window.__said.some((t) => new RegExp(p).test(t)), pattern.source, { timeout: 10_000 });
      return page.evaluate(() => window.__said.splice(0));
    };
    const photo = join(DATA, 'images', samples.find((x) => x.dx === 'nv').file);
    const risk = /(Higher|Lower) risk: \d+% chance this is malignant\.\s*(See a dermatologist|This does not rule out)/;
    for (const round of ['first', 'second']) {
      await fileInput(page).setInputFiles(photo);
      const said = await heard(risk);
      // The risk and what to do, not the whole result (diagnoses, population, the disclaimer).
      for (const t of said) assert.ok(t.length < 300, `the ${round} time, a screen reader is read ${t.length} characters: ${t.slice(0, 200)}...`);
    }
    await page.locator('derm-screen .saliency-toggle').click();
    await page.locator('derm-screen figure.saliency').waitFor();
    await page.waitForTimeout(500);
    assert.deepEqual((await page.evaluate(() => window.__said)).filter((t) => /risk|malignant/.test(t)), [],
      'showing the map does not read the answer again');
    await fileInput(page).setInputFiles({ name: 'grey.png', mimeType: 'image/png', buffer: solidPng(64, 64, [128, 128, 128]) });
    await heard(/No risk given for this photo\.\s*\S/);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('drag and drop: a photo is checked; of several, the first, and the page says so; a link gets what to do', async () => {
    const context = await browser.newContext();
    const { page } = await openApp(context, site.url, { backend: 'cpu' });
    // What a drop from the desktop or a web page delivers: files, or only an address.
    const drop = (files, link) => page.evaluate(async ({ files, link }) => {
      const el = document.querySelector('derm-screen');
      const data = new DataTransfer();
      for (const f of files) data.items.add(new File([await (await fetch(`/__samples/${f}`)).blob()], f, { type: 'image/jpeg' }));
      if (link) data.setData('text/uri-list', link);
      const outcome = new Promise((resolve) => {
        el.addEventListener('dermscreen:result', (e) => resolve(e.detail.image), { once: true });
        el.addEventListener('dermscreen:error', (e) => resolve(e.detail.message), { once: true });
      });
      el.shadowRoot.querySelector('.drop').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
      const got = await outcome;
      await new Promise((r) => setTimeout(r, 0)); // the status line is set after the event
      return { got, status: el.shadowRoot.querySelector('.status-text').textContent };
    }, { files, link });
    const one = await drop([samples[0].file]);
    assert.equal(one.got, samples[0].image);
    assert.doesNotMatch(one.status, /first of/);
    const several = await drop(samples.slice(1, 4).map((s) => s.file));
    assert.equal(several.got, samples[1].image);
    assert.match(several.status, new RegExp(`${samples[1].file}, the first of 3 photos dropped: drop one at a time`));
    const link = await drop([], 'https://example.com/spot.jpg');
    assert.match(link.got, /not a file.*Save the photo, then drop or choose the file/);

    // A second photo dropped while the first is being checked is checked next, not ignored:
    // else the answer left on screen, the first photo's, would be read as the second's.
    const [first, second] = [samples[4], samples[5]];
    const inTurn = await page.evaluate(async (files) => {
      const el = document.querySelector('derm-screen');
      const photos = await Promise.all(files.map(async (f) => new File([await (await fetch(`/__samples/${f}`)).blob()], f, { type: 'image/jpeg' })));
      const seen = [];
      const statuses = [];
      const both = new Promise((resolve) => {
        setTimeout(resolve, 20_000);
        el.addEventListener('dermscreen:result', (e) => { seen.push(e.detail.image); if (seen.length === 2) resolve(); });
      });
      for (const photo of photos) {
        const data = new DataTransfer();
        data.items.add(photo);
        el.shadowRoot.querySelector('.drop').dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
        statuses.push(el.shadowRoot.querySelector('.status-text').textContent);
      }
      await both;
      return { seen, statuses, shown: el.shadowRoot.querySelector('.result .meta').textContent };
    }, [first.file, second.file]);
    assert.deepEqual(inTurn.seen, [first.image, second.image]);
    assert.deepEqual(inTurn.statuses, [`Checking ${first.file}…`, `Checking ${first.file}, then ${second.file}…`]);
    assert.match(inTurn.shown, new RegExp(`^${second.file} · `));
    await context.close();
  });

  test('paste: a photo pasted on the app page or into an embedded element is checked as the CLI checks it; text gets what to copy', { timeout: 120_000 }, async () => {
    // (A paste the page ignores sends no event: the timeout turns that into a failure.)
    const context = await browser.newContext();
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: site.url });
    // What "Copy image" puts on the clipboard: the decoded photo, which the browser pastes as a PNG.
    const copyPhoto = (page, file) => page.evaluate(async (f) => {
      const bitmap = await createImageBitmap(await (await fetch(`/__samples/${f}`)).blob());
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      canvas.getContext('2d').drawImage(bitmap, 0, 0);
      await navigator.clipboard.write([new ClipboardItem({ 'image/png': await canvas.convertToBlob({ type: 'image/png' }) })]);
    }, file);
    // The bytes the next paste delivers, read as the page receives them. The listener is in
    // place when this resolves (a key press can reach the page before a pending evaluate runs);
    // what it resolves to reads the bytes once pasted.
    const pastedBytes = async (page) => {
      await page.evaluate(() => {
        window.__pasted = new Promise((resolve) => {
          document.addEventListener('paste', (e) => {
            e.clipboardData.files[0].arrayBuffer().then((b) => resolve([...new Uint8Array(b)]));
          }, { capture: true, once: true });
        });
      });
      return () => page.evaluate(() => window.__pasted);
    };
    const cliOn = (bytes, name) => {
      const path = join(OUT, name);
      writeFileSync(path, Buffer.from(bytes));
      return JSON.parse(execFileSync(CLI, ['classify', '--format', 'json', '--model', join(ROOT, 'model'), path], { encoding: 'utf8' }))[0];
    };

    // The app page: the focus on the page itself, as after a click on its text.
    const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
    const [first, second] = samples;
    await copyPhoto(page, first.file);
    await page.click('h1');
    let [bytes, outcome] = [await pastedBytes(page), await armOutcome(page)];
    await page.keyboard.press('Control+V');
    let got = await outcome();
    assert.equal(got.error, undefined);
    assert.ok(maxDiff(got.result, cliOn(await bytes(), 'pasted-app.png')) <= PARITY_TOLERANCE, 'the pasted photo is judged as the CLI judges the same file');
    assert.match(await page.locator('derm-screen .status-text').innerText(), /^Done in/);

    // Embedded: a paste on the host's own page is the host's; one with the focus in the element is checked.
    const embed = await context.newPage();
    await embed.goto(`${site.url}/embed.html`);
    await embed.evaluate(() => document.querySelector('derm-screen').ready);
    await embed.evaluate(() => { window.__results = 0; document.addEventListener('dermscreen:result', () => { window.__results += 1; }); });
    await copyPhoto(embed, first.file);
    await embed.click('h1');
    await embed.keyboard.press('Control+V');
    await copyPhoto(embed, second.file);
    await embed.locator('derm-screen .pick').focus();
    [bytes, outcome] = [await pastedBytes(embed), await armOutcome(embed)];
    await embed.keyboard.press('Control+V');
    got = await outcome();
    assert.ok(maxDiff(got.result, cliOn(await bytes(), 'pasted-embed.png')) <= PARITY_TOLERANCE);
    assert.equal(await embed.evaluate(() => window.__results), 1, 'the paste on the host page was left to the host');

    // Text: into the context form's age field it is the field's; elsewhere in the element it gets what to copy.
    await embed.locator('derm-screen .context-slot summary').click();
    await embed.evaluate(() => navigator.clipboard.writeText('72'));
    await embed.locator('derm-screen input[name=age]').focus();
    await embed.keyboard.press('Control+V');
    assert.equal(await embed.locator('derm-screen input[name=age]').inputValue(), '72');
    assert.equal(await embed.locator('derm-screen .error').isHidden(), true);
    await embed.evaluate(() => navigator.clipboard.writeText('https://example.com/spot.jpg'));
    await embed.locator('derm-screen .drop').focus();
    outcome = await armOutcome(embed);
    await embed.keyboard.press('Control+V');
    assert.match((await outcome()).error, /text, not a photo\. Copy the photo itself .* or save it and choose the file/);
    assert.match(await resultText(embed), /malignant/, 'the last result stays');
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('works offline after the first visit (service worker), saved after the first load, not beside it; a CPU page never downloads the WebGPU engine', async () => {
    const own = await serveSite();
    // Here auto runs on the CPU (SwiftShader is a software adapter): the CPU-only engine build.
    const big = ['/pkg-cpu/dermscreen_bg.wasm', '/model/model.bpk', '/model/model.json'];
    const context = await browser.newContext();
    const { page } = await openApp(context, own.url);
    await page.evaluate(() => navigator.serviceWorker.ready);
    await page.waitForFunction(() => navigator.serviceWorker.controller !== null);
    // Saving the app for offline use waits for the first load, whose downloads (~20 MB on a
    // phone's connection) would otherwise share the line with its own copies of them: the
    // worker is asked for only after the page has fetched the engine and the model, once each.
    const first = own.asked.slice(0, own.asked.indexOf('/sw.js'));
    assert.deepEqual(big.map((p) => first.filter((q) => q === p).length), [1, 1, 1], `before the worker: ${first.join(' ')}`);
    // Then what the browser kept of them is only revalidated (here the model; this headless
    // browser's cache keeps no 17 MB entry, so the engine comes again).
    assert.deepEqual(big.slice(1).map((p) => own.sent[p]), [1, 1], 'the model is not downloaded again to be saved');
    // Installable: the manifest names the app and its icons are there.
    const manifest = await page.evaluate(async () => {
      const m = await (await fetch(document.querySelector('link[rel=manifest]').href)).json();
      const icons = await Promise.all(m.icons.map(async (i) => (await fetch(i.src)).ok));
      return { name: m.name, display: m.display, icons: m.icons.map((i) => i.sizes), ok: icons.every(Boolean) };
    });
    assert.equal(manifest.display, 'standalone');
    assert.ok(manifest.icons.includes('192x192') && manifest.icons.includes('512x512') && manifest.ok);
    await context.setOffline(true);
    await page.reload();
    assert.ok(await page.evaluate(async () => (await document.querySelector('derm-screen').ready).backend));
    const event = await armResult(page);
    await fileInput(page).setInputFiles(join(DATA, 'images', samples[3].file));
    assert.ok(maxDiff((await event()).detail, cli.get(samples[3].image)) <= PARITY_TOLERANCE);
    // The WebGPU build (four times the download) was fetched by neither the page nor the worker.
    assert.equal(own.sent['/pkg/dermscreen_bg.wasm'], undefined, 'the WebGPU engine was never downloaded');
    // Offline, WebGPU asked for: its build was never saved, so the saved CPU-only one runs, and says why.
    const { page: asked, ready } = await openApp(context, own.url, { backend: 'webgpu' });
    assert.equal(ready.backend, 'cpu');
    assert.match(ready.fallbackReason, /^the WebGPU engine could not be downloaded \(.+\)$/);
    const again = await armResult(asked);
    await fileInput(asked).setInputFiles(join(DATA, 'images', samples[3].file));
    assert.ok(maxDiff((await again()).detail, cli.get(samples[3].image)) <= PARITY_TOLERANCE);
    await context.close();
    own.server.close();
  });

  test('a page that moves from the CPU to WebGPU saves that engine build too, and nothing else again; offline both run', async () => {
    const own = await serveSite();
    const context = await browser.newContext();
    const { page: cpu } = await openApp(context, own.url);
    await cpu.waitForFunction(() => navigator.serviceWorker.controller?.scriptURL.endsWith('sw.js?engine=cpu'));
    const { page: gpu, ready } = await openApp(context, own.url, { backend: 'webgpu' });
    assert.equal(ready.backend, 'webgpu');
    // The worker is registered again for the build this page ran, and saves only that build.
    await gpu.waitForFunction(async () => navigator.serviceWorker.controller?.scriptURL.endsWith('sw.js?engine=full')
      && Boolean(await caches.match('/pkg/dermscreen_bg.wasm')));
    assert.equal(own.sent['/model/model.bpk'], 1, 'the model is downloaded once, by the first visit');
    assert.equal(own.sent['/pkg-cpu/dermscreen_bg.wasm'], 1, 'the CPU-only build is downloaded once');
    await gpu.locator('.offline', { hasText: 'Saved on this device: works offline from now on.' }).waitFor();
    await context.setOffline(true);
    for (const [page, backend] of [[cpu, 'cpu'], [gpu, 'webgpu']]) {
      await page.reload();
      assert.equal(await page.evaluate(async () => (await document.querySelector('derm-screen').ready).backend), backend);
    }
    await context.close();
    own.server.close();
  });

  test('a new build with a new model replaces the cached one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dermscreen-site-'));
    cpSync(SITE, dir, { recursive: true });
    const own = await serveSite(dir);
    try {
      const context = await browser.newContext();
      const { page, ready } = await openApp(context, own.url);
      await page.evaluate(() => navigator.serviceWorker.ready);
      const first = await page.evaluate(() => caches.keys());
      assert.equal(first.length, 1);
      // Publish a "new model" (same weights, renamed) and a service worker stamped for it, as
      // build.sh stamps it: the build's name, and the new file's SHA-256.
      const metaPath = join(dir, 'model/model.json');
      const meta = JSON.parse(readFileSync(metaPath, 'utf8'));
      const sha256 = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');
      const before = sha256(metaPath);
      writeFileSync(metaPath, JSON.stringify({ ...meta, name: `${meta.name}-next` }));
      const sw = readFileSync(join(dir, 'sw.js'), 'utf8').replace(/^const BUILD = .*$/m, "const BUILD = 'next-build';");
      assert.ok(sw.includes(`"model/model.json": "${before}"`));
      writeFileSync(join(dir, 'sw.js'), sw.replace(before, sha256(metaPath)));
      await page.evaluate(async () => {
        const reg = await navigator.serviceWorker.getRegistration();
        await reg.update();
        const next = reg.installing ?? reg.waiting;
        if (next && next.state !== 'activated') {
          await new Promise((resolve) => next.addEventListener('statechange', () => next.state === 'activated' && resolve()));
        }
      });
      await page.reload();
      const name = await page.evaluate(async () => (await document.querySelector('derm-screen').ready).model.name);
      assert.equal(name, `${meta.name}-next`);
      assert.deepEqual(await page.evaluate(() => caches.keys()), ['dermscreen-next-build']);
      await context.close();
    } finally {
      own.server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // A deploy caught halfway, or a proxy that cut a file and closed the connection, hands the
  // first visit a short file that looks whole. The worker serves its saved files first, so one
  // saved short would break the page, online too, until the next build.
  test('a file cut short on the first visit is not saved for offline use, and Try again loads once the server has it whole', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dermscreen-site-'));
    cpSync(SITE, dir, { recursive: true });
    const bpk = join(dir, 'model/model.bpk');
    const whole = readFileSync(bpk);
    writeFileSync(bpk, whole.subarray(0, whole.length >> 1));
    const own = await serveSite(dir);
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      // On each page load, the outcome of the worker's install that app.js starts: 'activated',
      // or 'redundant' for one that was refused.
      await page.addInitScript(() => {
        const container = navigator.serviceWorker;
        const register = container.register.bind(container);
        window.installed = new Promise((resolve) => {
          const watch = (w) => {
            const end = () => ['activated', 'redundant'].includes(w.state) && resolve(w.state);
            if (!end()) w.addEventListener('statechange', end);
          };
          container.register = async (...args) => {
            const reg = await register(...args);
            const w = reg.installing ?? reg.waiting ?? reg.active;
            if (w) watch(w);
            else reg.addEventListener('updatefound', () => watch(reg.installing), { once: true });
            return reg;
          };
        });
      });
      await page.goto(`${own.url}/`);
      const outcome = () => page.evaluate(async () => {
        await customElements.whenDefined('derm-screen');
        return document.querySelector('derm-screen').ready.then((r) => `loaded ${r.model.name}`, (e) => e.message);
      });
      const installed = () => page.evaluate(() => window.installed);
      assert.match(await outcome(), /^Could not download the model weights: the download ended after 1\.5 of 3\.1 MB\./);
      assert.equal(await installed(), 'redundant', 'a build with a short file is not installed');
      assert.deepEqual(await page.evaluate(() => caches.keys()), [], 'nothing is saved');
      await page.locator('.offline', { hasText: 'Not saved for offline use this time: a download did not arrive whole. The next visit tries again.' }).waitFor();
      writeFileSync(bpk, whole);
      await page.locator('derm-screen .error button', { hasText: 'Try again' }).click();
      const meta = JSON.parse(readFileSync(join(dir, 'model/model.json'), 'utf8'));
      assert.equal(await outcome(), `loaded ${meta.name}`);
      // The next visit saves the whole build, and the one after works offline.
      await page.reload();
      assert.equal(await outcome(), `loaded ${meta.name}`);
      assert.equal(await installed(), 'activated');
      await page.locator('.offline', { hasText: 'Saved on this device: works offline from now on.' }).waitFor();
      await context.setOffline(true);
      await page.reload();
      assert.equal(await outcome(), `loaded ${meta.name}`);
    } finally {
      await context.close();
      own.server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // A clinic's tablet passes from one person to the next: the host starts over by putting a new
  // element in place of the old one. Nothing of the last person may show, and the ~20 MB the
  // page already holds must not come again.
  test('a host starts over for the next person by replacing the element: nothing of the last stays, nothing is downloaded again', async () => {
    const own = await serveSite();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      await page.goto(`${own.url}/embed.html`);
      await page.evaluate(() => document.querySelector('derm-screen').ready);
      await page.evaluate(() => document.querySelector('derm-screen').setContext({ age: 70, sex: 'female' }));
      const result = await armResult(page);
      await fileInput(page).setInputFiles(join(DATA, 'images', samples[0].file));
      assert.deepEqual((await result()).detail.context_used.sort(), ['age', 'sex']);
      const last = new RegExp(`${samples[0].image}|malignant\\.`);
      assert.match(await page.evaluate(() => document.querySelector('derm-screen').shadowRoot.textContent), last);
      const fetched = { ...own.sent };
      const fresh = await page.evaluate(async () => {
        const old = document.querySelector('derm-screen');
        const next = document.createElement('derm-screen');
        for (const a of old.attributes) next.setAttribute(a.name, a.value);
        old.replaceWith(next);
        const loaded = await next.ready;
        const root = next.shadowRoot;
        return { model: loaded.model.name, context: next.context, result: root.querySelector('.result').hidden, shown: root.textContent };
      });
      assert.deepEqual(own.sent, fetched, 'the engine and the model are not downloaded again');
      assert.deepEqual(fresh.context, {});
      assert.equal(fresh.result, true, 'no result shown');
      assert.doesNotMatch(fresh.shown, last, 'nothing of the last photo');
      const next = await armResult(page);
      await fileInput(page).setInputFiles(join(DATA, 'images', samples[1].file));
      const { detail } = await next();
      assert.deepEqual(detail.context_used, [], 'the next person\'s photo is judged without the last one\'s answers');
      assert.ok(maxDiff(detail, cli.get(samples[1].image)) <= PARITY_TOLERANCE);
    } finally {
      await context.close();
      own.server.close();
    }
  });

  test('embedded in a host page with a strict CSP: events carry the CLI JSON', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const csp = [];
    page.on('console', (m) => { if (/Content Security Policy|Refused/.test(m.text())) csp.push(m.text()); });
    await page.goto(`${site.url}/embed.html`);
    assert.equal(await page.evaluate(async () => {
      const { DermScreen } = await import('./derm-screen.js');
      return DermScreen.isSupported();
    }), true);
    await page.evaluate(() => document.querySelector('derm-screen').ready);
    const s = samples.find((x) => x.dx === 'bcc');
    await fileInput(page).setInputFiles(join(DATA, 'images', s.file));
    await page.locator('#log').getByText('dermscreen:result').waitFor();
    const logged = JSON.parse((await page.locator('#log').innerText()).split('\n')[0].replace('dermscreen:result ', ''));
    const reference = cli.get(s.image);
    assert.deepEqual(Object.keys(logged).sort(), Object.keys(reference).sort());
    assert.ok(maxDiff(logged, reference) <= PARITY_TOLERANCE);
    // A host passing an address or raw bytes learns what classify() takes.
    const refused = await page.evaluate(() => Promise.all(['https://example.com/spot.jpg', new ArrayBuffer(8)].map(
      (x) => document.querySelector('derm-screen').classify(x).then(() => 'accepted', (e) => `${e.name}: ${e.message}`))));
    for (const r of refused) assert.match(r, /^TypeError: classify\(\) takes a File or Blob/);
    // The host's brand colour, set through the CSSOM as a strict CSP allows, reaches the buttons.
    const colours = await page.evaluate(() => {
      const el = document.querySelector('derm-screen');
      const look = () => ['.pick', '.start-camera'].map((b) => {
        const style = getComputedStyle(el.shadowRoot.querySelector(b));
        return [style.backgroundColor, style.color];
      });
      const before = look();
      el.style.setProperty('--dermscreen-accent', 'rgb(10, 110, 80)');
      return { before, after: look() };
    });
    assert.deepEqual(colours.before, [['rgb(29, 79, 145)', 'rgb(255, 255, 255)'], ['rgb(255, 255, 255)', 'rgb(29, 79, 145)']]);
    assert.deepEqual(colours.after, [['rgb(10, 110, 80)', 'rgb(255, 255, 255)'], ['rgb(255, 255, 255)', 'rgb(10, 110, 80)']]);
    assert.deepEqual(csp, [], 'no CSP violations');
    await page.screenshot({ path: join(OUT, 'desktop-embed.png'), fullPage: true });
    await context.close();
  });

  test('embedded from another origin under the README\'s policy: engine and model come from beside the script', async () => {
    // A telehealth site's page on its own origin (another port), loading the element, as the
    // README shows, from where dermscreen is served; the policy names that origin.
    const from = site.url;
    const hostPage = (modelUrl) => `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'; script-src 'self' ${from} 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob:; media-src mediastream: blob:; connect-src 'self' ${from}">
<script type="module" src="${from}/derm-screen.js"></script><script type="module" src="${from}/embed.js"></script>
</head><body><derm-screen id="screen" camera="off"${modelUrl ? ` model-url="${modelUrl}"` : ''}></derm-screen><pre id="log"></pre></body></html>`;
    const served = [];
    const host = createServer((req, res) => {
      served.push(req.url);
      const modelUrl = new URL(req.url, 'http://x').searchParams.get('model');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(hostPage(modelUrl));
    });
    await new Promise((r) => host.listen(0, '127.0.0.1', r));
    // The same site from a server that does not let other origins load it.
    const closed = await serveSite(SITE, {}, { cors: false });
    const hostUrl = `http://127.0.0.1:${host.address().port}/`;
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      const csp = [];
      page.on('console', (m) => { if (/Content Security Policy|Refused/.test(m.text())) csp.push(m.text()); });
      await page.goto(hostUrl);
      await page.evaluate(() => document.querySelector('derm-screen').ready);
      const s = samples.find((x) => x.dx === 'mel');
      await fileInput(page).setInputFiles(join(DATA, 'images', s.file));
      await page.locator('#log').getByText('dermscreen:result').waitFor();
      const logged = JSON.parse((await page.locator('#log').innerText()).split('\n')[0].replace('dermscreen:result ', ''));
      assert.ok(maxDiff(logged, cli.get(s.image)) <= PARITY_TOLERANCE);
      assert.deepEqual(csp, [], 'no CSP violations');
      assert.deepEqual(served.filter((p) => p !== '/favicon.ico'), ['/'], 'the host served only its page');

      // A model on a server without Access-Control-Allow-Origin: the message names that server
      // and the header, not only the connection.
      await page.goto(`${hostUrl}?model=${encodeURIComponent(`${closed.url}/model/model.json`)}`);
      const refused = await page.evaluate(() => document.querySelector('derm-screen').ready.then(() => 'loaded', (e) => e.message));
      assert.match(refused, new RegExp(`${closed.url.replace(/[.:/]/g, '\\$&')} does not let this site load it: it must send Access-Control-Allow-Origin`));
      await page.locator('derm-screen').getByText('Access-Control-Allow-Origin').waitFor();
    } finally {
      await context.close();
      host.close();
      closed.server.close();
    }
  });

  // A framework often adds the element first and sets its bound attributes after, and a host
  // may switch models later: the element must use what its attributes say now, not what they
  // said when it arrived.
  test('model-url and backend changed after the element is on the page: that model and backend are used', async () => {
    // A second model beside the site's (the same weights under another name), on the same
    // origin, so embed.html's policy lets the page load it.
    const dir = mkdtempSync(join(tmpdir(), 'dermscreen-model-'));
    cpSync(join(SITE, 'model'), dir, { recursive: true });
    const meta = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
    writeFileSync(join(dir, 'model.json'), JSON.stringify({ ...meta, name: `${meta.name}-other` }));
    const own = await serveSite(SITE, { '/other/': dir });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      const problems = [];
      page.on('pageerror', (e) => problems.push(e.message));
      await page.goto(`${own.url}/embed.html`);
      const first = await page.evaluate(async () => (await document.querySelector('derm-screen').ready).model.name);
      assert.equal(first, meta.name);
      const loadWith = (attributes) => page.evaluate(async (attributes) => {
        const el = document.querySelector('derm-screen');
        for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, v);
        return el.ready.then((r) => ({ name: r.model.name, backend: r.backend }), (e) => ({ error: e.message }));
      }, attributes);

      // A model that is not there: the element tries it and says so.
      const missing = await loadWith({ 'model-url': '/other/missing.json' });
      assert.match(missing.error ?? '', /answered 404 for .*\/other\/missing\.json/);
      await page.locator('derm-screen .error').getByText('missing.json').waitFor();

      // Then another model on the CPU, both changed at once: that model, that backend, no error left.
      const other = await loadWith({ backend: 'cpu', 'model-url': '/other/model.json' });
      assert.deepEqual(other, { name: `${meta.name}-other`, backend: 'cpu' });
      assert.equal(await page.locator('derm-screen .error').isVisible(), false);
      const s = samples.find((x) => x.dx === 'mel');
      const event = await armResult(page);
      await fileInput(page).setInputFiles(join(DATA, 'images', s.file));
      assert.ok(maxDiff((await event()).detail, cli.get(s.image)) <= PARITY_TOLERANCE);
      assert.equal(await page.locator('derm-screen .result').isVisible(), true);

      // A new model takes the last result away (it came from the model before) and keeps the
      // patient context, which its own form then shows.
      await page.waitForFunction(() => document.querySelector('derm-screen').shadowRoot.querySelector('.answer-said').textContent !== '');
      await page.evaluate(() => document.querySelector('derm-screen').setContext({ age: 72, bled: true }));
      const back = await loadWith({ 'model-url': 'model/model.json' });
      assert.deepEqual(back, { name: meta.name, backend: 'cpu' });
      assert.equal(await page.locator('derm-screen .result').isVisible(), false);
      assert.equal(await page.locator('derm-screen .answer-said').textContent(), '', 'nor is its sentence left for screen readers');
      assert.deepEqual(await page.evaluate(() => document.querySelector('derm-screen').context), { age: '72', bled: 'true' });
      assert.equal(await page.locator('derm-screen input[name=age]').inputValue(), '72');
      assert.equal(await page.locator('derm-screen input[name=bled][value=true]').isChecked(), true);

      // A photo being checked when the model changes is checked again with the new one: the
      // page never shows a result of a model it has moved away from.
      const switchedMidCheck = await page.evaluate(async (file) => {
        const el = document.querySelector('derm-screen');
        const checked = el.classify(await (await fetch(`/__samples/${file}`)).blob(), file);
        el.setAttribute('model-url', '/other/model.json');
        await checked;
        return el.shadowRoot.querySelector('.result .meta').textContent;
      }, s.file);
      assert.match(switchedMidCheck, new RegExp(`· model ${meta.name}-other ·`));
      await loadWith({ 'model-url': 'model/model.json' });

      // The photo buttons wait out a load (here WebGPU, not yet started on this page) without
      // losing the keyboard's focus (Chromium moves it from a disabled button to the page), and
      // Enter on "Choose a photo" opens the picker only once the model is there.
      let pickers = 0;
      page.on('filechooser', () => { pickers += 1; });
      await page.locator('derm-screen .pick').focus();
      const loading = await page.evaluate(async () => {
        const el = document.querySelector('derm-screen');
        el.setAttribute('backend', 'webgpu');
        await new Promise((r) => setTimeout(r, 50));
        const pick = el.shadowRoot.querySelector('.pick');
        return pick.disabled || pick.getAttribute('aria-disabled') === 'true';
      });
      assert.equal(loading, true);
      await page.keyboard.press('Enter');
      const focus = await page.evaluate(async () => {
        const el = document.querySelector('derm-screen');
        await el.ready;
        return el.shadowRoot.activeElement?.className;
      });
      assert.equal(focus, 'pick');
      assert.equal(pickers, 0, 'no picker while the model loads');
      await page.keyboard.press('Enter');
      await page.waitForTimeout(200);
      assert.equal(pickers, 1, 'the picker once it is loaded');
      // Nor does Enter on the drop zone around it open one during a load (here the other model
      // on WebGPU, not loaded yet).
      await page.locator('derm-screen .drop').focus();
      await page.evaluate(() => document.querySelector('derm-screen').setAttribute('model-url', '/other/model.json'));
      await page.keyboard.press('Enter');
      await page.evaluate(() => document.querySelector('derm-screen').ready);
      assert.equal(pickers, 1, 'no picker from the drop zone while the model loads');
      await page.keyboard.press('Enter');
      await page.waitForTimeout(200);
      assert.equal(pickers, 2, 'the drop zone\'s picker once it is loaded');
      await loadWith({ backend: 'cpu', 'model-url': 'model/model.json' });

      // Created, added, then given its backend and model in the same script (as a framework's
      // binding does), on a page that has loaded no model yet: one load, of those, and the
      // default model is never fetched. SwiftShader is the only adapter here, so "auto" would
      // have taken the CPU.
      writeFileSync(join(dir, 'bare.html'), '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>host</title>'
        + '<script type="module" src="/derm-screen.js"></script></head><body></body></html>');
      const bare = await context.newPage();
      bare.on('pageerror', (e) => problems.push(e.message));
      const fetched = [];
      bare.on('request', (r) => fetched.push(new URL(r.url()).pathname));
      await bare.goto(`${own.url}/other/bare.html`);
      const added = await bare.evaluate(async () => {
        await customElements.whenDefined('derm-screen');
        const el = document.createElement('derm-screen');
        el.setAttribute('camera', 'off');
        document.body.append(el);
        el.setAttribute('backend', 'webgpu');
        el.setAttribute('model-url', '/other/model.json');
        const r = await el.ready;
        return { name: r.model.name, backend: r.backend, status: el.shadowRoot.querySelector('.status-text').textContent };
      });
      assert.equal(added.name, `${meta.name}-other`);
      assert.equal(added.backend, 'webgpu');
      assert.match(added.status, /graphics chip/);
      assert.deepEqual(fetched.filter((p) => /\.(json|bpk)$/.test(p)), ['/other/model.json', '/other/model.bpk']);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
      own.server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('without WebGPU, with a camera (fake device)', () => {
  let browser;
  before(async () => { browser = await launch({ webgpu: false, fakeCamera: true }); });
  after(() => browser.close());

  test('falls back to the CPU and says so', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const { page, ready, problems } = await openApp(context, site.url);
    assert.equal(ready.backend, 'cpu');
    assert.match(ready.fallbackReason ?? '', /WebGPU/);
    await page.locator('derm-screen .status').getByText('processor (CPU)').waitFor();
    await fileInput(page).setInputFiles(join(DATA, 'images', samples.find((x) => x.dx === 'nv').file));
    await page.locator('derm-screen .result').waitFor();
    await page.screenshot({ path: join(OUT, 'desktop-cpu-result.png'), fullPage: true });
    assert.deepEqual(problems, []);
    await context.close();
  });

  // A host that sets backend="webgpu" must not leave a phone without WebGPU with a dead element.
  test('WebGPU asked for where there is none: the CPU runs, and the status line says why', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const { page, ready, problems } = await openApp(context, site.url, { backend: 'webgpu' });
    assert.equal(ready.backend, 'cpu');
    assert.match(ready.fallbackReason ?? '', /^WebGPU was asked for, but/);
    await page.locator('derm-screen .status').getByText('processor (CPU)').waitFor();
    assert.match(await page.locator('derm-screen .status').innerText(), /WebGPU was asked for, but/);
    const s = samples.find((x) => x.dx === 'mel');
    const event = await armResult(page);
    await fileInput(page).setInputFiles(join(DATA, 'images', s.file));
    assert.ok(maxDiff((await event()).detail, cli.get(s.image)) <= PARITY_TOLERANCE);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('a browser that cannot run the engine, or runs no scripts, is told so', async () => {
    const noScripts = await browser.newContext({ javaScriptEnabled: false });
    const bare = await noScripts.newPage();
    await bare.goto(site.url);
    // (getByText skips what is inside <noscript>, even where it is shown.)
    assert.equal(await bare.locator('p.warning', { hasText: 'This page needs JavaScript' }).isVisible(), true);
    await noScripts.close();

    // No WebAssembly SIMD (an old browser): said at once, with nothing to try again.
    const context = await browser.newContext();
    await context.addInitScript(() => { WebAssembly.validate = () => false; });
    const page = await context.newPage();
    await page.goto(site.url);
    const refused = await page.evaluate(async () => {
      await customElements.whenDefined('derm-screen');
      return document.querySelector('derm-screen').ready.then(() => 'loaded', (e) => e.message);
    });
    assert.match(refused, /^This browser cannot run the classifier \(it needs WebAssembly with SIMD/);
    await page.locator('derm-screen .error').getByText('cannot run the classifier').waitFor();
    assert.equal(await page.locator('derm-screen .error button').count(), 0);
    assert.equal(await page.locator('derm-screen .status-text').innerText(), 'Not available in this browser.');
    await context.close();
  });

  // A phone's connection drops during the first visit's 20 MB. The page must say that, not blame
  // the browser, and load again on a tap: a reload would also lose the host page's own state.
  test('a download cut off midway: the page says the connection broke, and Try again loads without a reload', async () => {
    // The site, with the engine's wasm, the model's description and its weights each cut off
    // halfway, once, in the order the page asks for them; then the weights' server ends early
    // without an error (half the bytes, no length given).
    const faults = [['/pkg-cpu/dermscreen_bg.wasm', 'cut'], ['/model/model.json', 'cut'], ['/model/model.bpk', 'cut'], ['/model/model.bpk', 'short']];
    // The first fault waits until the test has dropped a photo, which then waits for the model.
    let release;
    const dropped = new Promise((r) => { release = r; });
    const flaky = createServer(async (req, res) => {
      if (new URL(req.url, 'http://x').pathname === faults[0]?.[0] && faults.length === 4) await dropped;
      const upstream = await fetch(site.url + req.url);
      const body = Buffer.from(await upstream.arrayBuffer());
      const type = { 'content-type': upstream.headers.get('content-type') };
      const [path, how] = faults[0] ?? [];
      if (new URL(req.url, 'http://x').pathname !== path) {
        res.writeHead(upstream.status, { ...type, 'content-length': body.length });
        res.end(body);
        return;
      }
      faults.shift();
      const half = body.subarray(0, body.length >> 1);
      if (how === 'short') {
        res.writeHead(200, type);
        res.end(half);
      } else {
        res.writeHead(200, { ...type, 'content-length': body.length });
        res.write(half, () => res.destroy());
      }
    });
    await new Promise((r) => flaky.listen(0, '127.0.0.1', r));
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      const problems = [];
      page.on('pageerror', (e) => problems.push(e.message));
      await page.goto(`http://127.0.0.1:${flaky.address().port}/embed.html`, { waitUntil: 'domcontentloaded' });
      const waiting = samples.find((x) => x.dx === 'nv');
      await page.evaluate(async (f) => {
        const data = new DataTransfer();
        data.items.add(new File([await (await fetch(`/__samples/${f}`)).blob()], f, { type: 'image/jpeg' }));
        document.querySelector('derm-screen').shadowRoot.querySelector('.drop')
          .dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
      }, waiting.file);
      release();
      const outcome = () => page.evaluate(() => document.querySelector('derm-screen').ready.then((r) => `loaded ${r.model.name}`, (e) => e.message));
      const tryAgain = page.locator('derm-screen .error button', { hasText: 'Try again' });

      const engine = await outcome();
      assert.match(engine, /^Could not download the classifier engine \(.+\)\. Check the connection and try again\.$/);
      // The photo that waited is not blamed, and the load's error keeps its Try again.
      const status = page.locator('derm-screen .status-text');
      await status.getByText(`The classifier could not be loaded, so ${waiting.file} was not checked.`).waitFor();
      assert.match(await page.locator('derm-screen .error').innerText(), /Check the connection and try again\.\s*Try again$/);
      await page.screenshot({ path: join(OUT, 'load-failed.png') });
      await tryAgain.click();
      assert.equal(await page.evaluate(() => document.querySelector('derm-screen').shadowRoot.activeElement?.className), 'pick',
        'the focus waits on "Choose a photo", not lost with the button');

      const description = await outcome();
      assert.match(description, /^Could not download the model description: the connection broke \(.+\)\. Check the connection and try again\.$/);
      await tryAgain.click();

      const weights = await outcome();
      assert.match(weights, /^Could not download the model weights: the connection broke after [\d.]+ of [\d.]+ MB \(.+\)\. Check the connection and try again\.$/);
      await tryAgain.click();
      const short = await outcome();
      assert.match(short, /^Could not download the model weights: the download ended after [\d.]+ of [\d.]+ MB\. Check the connection and try again\.$/);
      await tryAgain.click();

      const meta = JSON.parse(readFileSync(join(SITE, 'model/model.json'), 'utf8'));
      assert.equal(await outcome(), `loaded ${meta.name}`);
      assert.equal(await page.locator('derm-screen .error').isVisible(), false);
      assert.deepEqual(faults, [], 'every fault happened');
      const s = samples.find((x) => x.dx === 'bcc');
      const event = await armResult(page);
      await fileInput(page).setInputFiles(join(DATA, 'images', s.file));
      assert.ok(maxDiff((await event()).detail, cli.get(s.image)) <= PARITY_TOLERANCE);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
      flaky.close();
    }
  });

  test('camera: live preview with the square guide, capture classifies the frame', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 }, permissions: ['camera'] });
    const { page } = await openApp(context, site.url);
    await page.locator('derm-screen .start-camera').click();
    await page.locator('derm-screen video').waitFor();
    await page.waitForFunction(() => document.querySelector('derm-screen').shadowRoot.querySelector('video').videoWidth > 0);
    assert.equal(await page.locator('derm-screen .guide').isVisible(), true);
    // The fake camera has no torch, so no torch button is offered.
    assert.equal(await page.locator('derm-screen .torch').isVisible(), false);
    await page.screenshot({ path: join(OUT, 'phone-360-camera.png') });
    const event = await armResult(page);
    await page.locator('derm-screen .capture').click();
    const { detail } = await event();
    assert.match(detail.image, /^camera-/);
    // Chromium's fake camera films a test pattern, not a skin spot: the gate says so.
    assert.equal(detail.gate, 'not_a_skin_spot');
    assert.equal(detail.classes, undefined);
    assert.match(await resultText(page), /No risk given for this photo[\s\S]*checks skin spots only[\s\S]*see a dermatologist/);
    // While it is open the camera is not offered again; closed by keyboard, the focus goes to
    // "Use the camera", not to the page.
    assert.equal(await page.locator('derm-screen .start-camera').isVisible(), false);
    await page.locator('derm-screen .stop-camera').focus();
    await page.keyboard.press('Enter');
    assert.equal(await page.locator('derm-screen video').isVisible(), false);
    assert.equal(await page.evaluate(() => document.querySelector('derm-screen').shadowRoot.activeElement?.className), 'secondary start-camera');
    assert.equal(await page.locator('derm-screen .start-camera').isVisible(), true);
    await context.close();
  });

  // What a screen reader or a switch user meets, checked by axe-core (WCAG 2 A and AA and its best
  // practices) in each state a person can bring about, in light and dark.
  test('an accessibility checker finds nothing wrong: start, details, result with map and tree, a refusal, the camera', async () => {
    for (const colorScheme of ['light', 'dark']) {
      const context = await browser.newContext({ viewport: { width: 360, height: 780 }, colorScheme, permissions: ['camera'] });
      const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
      const found = [];
      const check = async (state) => found.push(...(await axeViolations(page)).map((v) => `${colorScheme}, ${state}: ${v}`));
      await check('at the start');
      await page.locator('derm-screen details.context summary').click();
      await page.locator('derm-screen input[name=age]').fill('720');
      await check('the details open, an age refused');
      const result = await armResult(page);
      await fileInput(page).setInputFiles(join(DATA, 'images', samples.find((x) => x.dx === 'mel').file));
      await result();
      await check('a result');
      await page.locator('derm-screen input[name=bled][value=true]').check();
      await page.locator('derm-screen .saliency-toggle').click();
      await page.locator('derm-screen figure.saliency').waitFor();
      await page.locator('derm-screen .result details summary').click();
      await check('the map, the tree and the offer to check again');
      await fileInput(page).setInputFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a photo') });
      await page.locator('derm-screen .error').waitFor();
      await check('a file refused');
      await page.locator('derm-screen .start-camera').click();
      await page.locator('derm-screen .capture').waitFor();
      await check('the camera open');
      assert.deepEqual(problems, []);
      await context.close();
      assert.deepEqual(found, [], 'axe-core finds no violation');
    }
  });

  // A phone's camera can take a second or more to send its first picture after the page shows
  // the preview and "Take photo". A tap then was dropped without a word.
  test('Take photo tapped before the camera\'s first picture takes that picture, and a camera that sends none is named', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 }, permissions: ['camera'] });
    // A camera whose first picture comes `window.pictureAfter` ms after it is granted (never: -1).
    await context.addInitScript(() => {
      window.pictureAfter = 1500;
      navigator.mediaDevices.getUserMedia = async () => {
        const canvas = Object.assign(document.createElement('canvas'), { width: 480, height: 480 });
        const stream = canvas.captureStream(10);
        if (window.pictureAfter >= 0) {
          setTimeout(() => {
            const g = canvas.getContext('2d');
            setInterval(() => { g.fillStyle = '#c9a38f'; g.fillRect(0, 0, 480, 480); }, 100);
          }, window.pictureAfter);
        }
        return stream;
      };
    });
    const { page, problems } = await openApp(context, site.url);
    const pictures = () => page.evaluate(() => document.querySelector('derm-screen').shadowRoot.querySelector('video').videoWidth);
    const event = await armResult(page);
    await page.locator('derm-screen .start-camera').click();
    await page.locator('derm-screen .capture').click();
    assert.equal(await pictures(), 0, 'tapped before the first picture');
    const { detail } = await event();
    assert.match(detail.image, /^camera-/);
    assert.ok(detail.lesion_score !== undefined);

    await page.locator('derm-screen .stop-camera').click();
    await page.evaluate(() => { window.pictureAfter = -1; });
    const outcome = await armOutcome(page);
    await page.locator('derm-screen .start-camera').click();
    await page.locator('derm-screen .capture').click();
    assert.match((await outcome()).error, /^The camera photo could not be checked: the camera has sent no picture\. Tap "Close camera", then "Use the camera" to start it again, or choose a photo\.$/);
    assert.deepEqual(problems, []);
    await context.close();
  });

  test('on a phone\'s screen the camera\'s square and Take photo fit, upright or on its side, and the answer comes into view: to a photo taken, to one chosen, and to a file refused', async () => {
    const context = await browser.newContext({
      viewport: { width: 844, height: 390 }, isMobile: true, hasTouch: true, permissions: ['camera'], reducedMotion: 'reduce',
    });
    const { page, problems } = await openApp(context, site.url);
    const onScreen = (selector) => page.evaluate((sel) => {
      const box = document.querySelector('derm-screen').shadowRoot.querySelector(sel).getBoundingClientRect();
      return box.height > 0 && box.top >= -1 && box.bottom <= innerHeight + 1; // (scrolling rounds to whole pixels)
    }, selector);
    const answer = '.result > :first-child'; // the risk, or why none is given, with what to do
    // On its side (844x390) the square preview would be 640 px tall: the person must see all of
    // the square they aim with, and the button that takes the photo.
    await page.locator('derm-screen .start-camera').click();
    await page.waitForFunction(() => document.querySelector('derm-screen').shadowRoot.querySelector('video').videoWidth > 0);
    assert.equal(await onScreen('.camera'), true, 'on its side, the whole preview and its square are on screen');
    assert.equal(await onScreen('.capture'), true, 'on its side, Take photo is on screen below the preview');
    const [square, words] = await page.evaluate(() => ['.guide', '.guide-text']
      .map((sel) => document.querySelector('derm-screen').shadowRoot.querySelector(sel).getBoundingClientRect().toJSON()));
    assert.ok(words.top >= square.bottom, `the words under the square (from ${words.top} px) stay off it (to ${square.bottom} px)`);
    await page.screenshot({ path: join(OUT, 'phone-844x390-camera.png') });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.locator('derm-screen .stop-camera').click();
    await page.evaluate(() => scrollTo(0, 0));
    await page.locator('derm-screen .start-camera').click();
    await page.waitForFunction(() => document.querySelector('derm-screen').shadowRoot.querySelector('video').videoWidth > 0);
    assert.equal(await onScreen('.camera'), true, 'upright, the whole preview is on screen');
    assert.equal(await onScreen('.capture'), true, 'upright, Take photo is on screen');
    let event = await armResult(page);
    await page.locator('derm-screen .capture').click();
    await event();
    assert.equal(await onScreen(answer), true, 'the answer to the camera photo, below the preview, is scrolled into view');
    await page.screenshot({ path: join(OUT, 'phone-390-camera-answer.png') });
    await page.evaluate(() => scrollTo(0, 0));
    event = await armResult(page);
    await fileInput(page).setInputFiles(join(DATA, 'images', samples.find((x) => x.dx === 'mel').file));
    assert.equal((await event()).detail.gate, 'ok');
    assert.equal(await onScreen(answer), true, 'the answer to a chosen photo is in view');
    await page.evaluate(() => scrollTo(0, 0));
    const refused = await armOutcome(page);
    await fileInput(page).setInputFiles({ name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a photo') });
    assert.match((await refused()).error ?? '', /not a supported image/);
    assert.equal(await onScreen('.error'), true, 'why a file was refused is in view');
    assert.deepEqual(problems, []);
    await context.close();
  });

  // A phone ends the camera when the page goes to the background or another app takes it; the
  // preview then freezes or goes black, and a capture would be judged "too dark".
  test('a camera the browser ended is closed with what to do, and never captured', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 }, permissions: ['camera'] });
    const { page, problems } = await openApp(context, site.url);
    const start = async () => {
      await page.locator('derm-screen .start-camera').click();
      await page.waitForFunction(() => document.querySelector('derm-screen').shadowRoot.querySelector('video').videoWidth > 0);
    };
    const results = [];
    await page.exposeFunction('sawResult', (r) => results.push(r));
    await page.evaluate(() => document.querySelector('derm-screen').addEventListener('dermscreen:result', (e) => window.sawResult(e.detail.gate)));
    const notice = page.locator('derm-screen .camera-notice');
    // Ended while open: as the browser does it, the track stops and fires 'ended'.
    await start();
    await page.evaluate(() => {
      const track = document.querySelector('derm-screen').shadowRoot.querySelector('video').srcObject.getVideoTracks()[0];
      track.stop();
      track.dispatchEvent(new Event('ended'));
    });
    await notice.waitFor();
    assert.match(await notice.innerText(), /The camera stopped.*start it again/);
    assert.equal(await page.locator('derm-screen video').isVisible(), false, 'no frozen preview');
    // Ended without the event (a tap on the shutter as it goes): no frame is judged.
    await start();
    await page.evaluate(() => document.querySelector('derm-screen').shadowRoot.querySelector('video').srcObject.getVideoTracks()[0].stop());
    await page.locator('derm-screen .capture').click();
    await notice.waitFor();
    assert.deepEqual(results, [], 'nothing classified from an ended camera');
    assert.deepEqual(problems, []);
    await context.close();
  });

  // The camera's light must go out when the person closes it or the element goes away, even
  // when that happens while the camera is still starting (a permission prompt can take seconds).
  test('the camera is never left on: not by a double tap, nor by leaving while it starts', async () => {
    const context = await browser.newContext({ viewport: { width: 360, height: 780 }, permissions: ['camera'] });
    await context.addInitScript(() => {
      const granted = (window.grantedStreams = []);
      const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
      navigator.mediaDevices.getUserMedia = async (constraints) => {
        const stream = await getUserMedia(constraints);
        granted.push(stream);
        return stream;
      };
    });
    const { page, problems } = await openApp(context, site.url);
    const liveTracks = () => page.evaluate(() => new Promise((resolve) => setTimeout(() => resolve(
      window.grantedStreams.flatMap((s) => s.getTracks()).filter((t) => t.readyState === 'live').length), 200)));
    const startTwice = () => page.evaluate(() => {
      const start = document.querySelector('derm-screen').shadowRoot.querySelector('.start-camera');
      start.click();
      start.click();
    });

    // A double tap on "Use the camera": one camera runs, and "Close camera" turns it off.
    await startTwice();
    await page.waitForFunction(() => window.grantedStreams.length === 2);
    await page.waitForFunction(() => document.querySelector('derm-screen').shadowRoot.querySelector('video').videoWidth > 0);
    assert.equal(await liveTracks(), 1);
    await page.locator('derm-screen .stop-camera').click();
    assert.equal(await liveTracks(), 0);

    // The camera turned off by the host, or the element removed (a single-page app moving
    // on), before the camera has started.
    await page.evaluate(() => {
      const el = document.querySelector('derm-screen');
      el.shadowRoot.querySelector('.start-camera').click();
      el.setAttribute('camera', 'off');
    });
    await page.waitForFunction(() => window.grantedStreams.length === 3);
    assert.equal(await liveTracks(), 0);
    await page.evaluate(() => {
      const el = document.querySelector('derm-screen');
      el.setAttribute('camera', 'on');
      el.shadowRoot.querySelector('.start-camera').click();
      el.remove();
    });
    await page.waitForFunction(() => window.grantedStreams.length === 4);
    assert.equal(await liveTracks(), 0);
    assert.deepEqual(problems, []);
    await context.close();
  });

  // A phone tab that grows with every photo is eventually killed. After a first round that
  // sizes the engine's buffers, neither the wasm memory (which can only grow) nor the JS heap
  // (after a forced garbage collection) may keep growing. The curve goes to target/e2e/.
  test('memory stays flat over 500 photos and camera frames', async () => {
    const rounds = 10;
    const [filesPerRound, framesPerRound] = [40, 10];
    const context = await browser.newContext({ viewport: { width: 360, height: 780 }, permissions: ['camera'] });
    const { page, problems } = await openApp(context, site.url, { backend: 'cpu' });
    const cdp = await context.newCDPSession(page);
    await page.evaluate(async (files) => {
      window.soakPhotos = await Promise.all(files.map(async (f) => (await fetch(`/__samples/${f}`)).blob()));
    }, samples.map((s) => s.file));
    await page.locator('derm-screen .start-camera').click();
    await page.waitForFunction(() => document.querySelector('derm-screen').shadowRoot.querySelector('video').videoWidth > 0);
    const curve = [];
    for (let round = 1; round <= rounds; round++) {
      await page.evaluate(async (n) => {
        const el = document.querySelector('derm-screen');
        for (let k = 0; k < n; k++) await el.classify(window.soakPhotos[k % window.soakPhotos.length], `soak-${k}.jpg`);
      }, filesPerRound);
      for (let k = 0; k < framesPerRound; k++) {
        const result = await armResult(page);
        await page.locator('derm-screen .capture').click();
        await result();
      }
      await cdp.send('HeapProfiler.collectGarbage');
      const { usedSize } = await cdp.send('Runtime.getHeapUsage');
      const wasmBytes = await page.evaluate(async () => (await import('./engine.js')).wasmMemoryBytes());
      curve.push({ checked: round * (filesPerRound + framesPerRound), wasmBytes, jsHeapBytes: usedSize });
    }
    writeFileSync(join(OUT, 'memory-soak.json'), `${JSON.stringify(curve, null, 2)}\n`);
    const [warm, last] = [curve[0], curve.at(-1)];
    assert.equal(last.checked, 500);
    assert.ok(last.wasmBytes <= warm.wasmBytes, `wasm memory grew from ${warm.wasmBytes} to ${last.wasmBytes} bytes`);
    // 400 kB of slack for the JS heap (450 photos): one leaked result object (~1.5 kB) per
    // photo would add 675 kB. Measured here: +112 kB.
    assert.ok(last.jsHeapBytes <= warm.jsHeapBytes + 4e5, `JS heap grew from ${warm.jsHeapBytes} to ${last.jsHeapBytes} bytes`);
    assert.deepEqual(problems, []);
    await context.close();
  });
  // Another engine checks this one: the shipped network exported by `dermscreen export-onnx`
  // (views, folded convolutions, calibration, softmax) run in onnxruntime-web on the engine's own
  // inputs. It needs the CLI built with the `onnx` feature, as build.sh does.
  test('onnxruntime-web on the exported network gives the engine\'s probabilities, lesion score and kind of photo', async () => {
    const onnx = join(OUT, 'onnx', 'model.onnx');
    mkdirSync(join(OUT, 'onnx'), { recursive: true });
    execFileSync(CLI, ['export-onnx', '--model', join(ROOT, 'model'), '--out', onnx]);
    const { page, close } = await openComparison(browser, samples.slice(0, 4), onnx);
    try {
      const { worst, worstLesionScore, withKind, sameKind, outputs } = await parity(page);
      assert.equal(outputs.length, 4);
      assert.ok(worst < 1e-5, `largest |engine - onnxruntime-web| probability difference: ${worst}`);
      // The heads on the last hidden layer travel with the graph: the gate's log-odds and the
      // kind of photo that picks the flag's threshold.
      assert.ok(worstLesionScore < 1e-3, `largest |engine - onnxruntime-web| lesion score difference: ${worstLesionScore}`);
      assert.ok(withKind > 0 && sameKind === withKind, `onnxruntime-web reads ${sameKind} of ${withKind} photos as the same kind as the engine`);
    } finally {
      await close();
    }
  });
});

// A phone's browser may give a page far less wasm memory than a desktop's. In wasm running out
// of memory aborts the engine without a panic; each case must end in words, never in a check or
// a load that stays pending. V8's page limit stands in for the phone.
describe('with less memory than a page usually gets (--wasm-max-mem-pages)', () => {
  test('a photo that needs more memory than the page has: says so, and the next photo is checked', async () => {
    const browser = await launch({ webgpu: false, wasmPages: 2500 }); // 160 MB
    const context = await browser.newContext({ viewport: { width: 360, height: 780 } });
    const { page, problems } = await openApp(context, site.url);
    // A 50 MP photo (8160x6120) needs 150 MB for its pixels, and about 20 MB more for the engine.
    const big = Buffer.from(await page.evaluate(async (file) => {
      const original = await (await fetch(`/__samples/${file}`)).blob();
      const canvas = new OffscreenCanvas(8160, 6120);
      canvas.getContext('2d').drawImage(await createImageBitmap(original), 0, 0, canvas.width, canvas.height);
      const bytes = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.9 })).arrayBuffer());
      let text = '';
      for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      return btoa(text);
    }, samples[0].file), 'base64');
    const refused = await armOutcome(page);
    await fileInput(page).setInputFiles({ name: 'IMG_50MP.jpg', mimeType: 'image/jpeg', buffer: big });
    const { error } = await refused();
    assert.match(error, /^IMG_50MP\.jpg: not enough memory: a 8160x6120 px photo needs 150 MB to decode, more than can be had here now \(a browser gives a page less than the device has\); use a smaller copy of it/);
    assert.equal(await page.locator('derm-screen .status').innerText(), 'That photo could not be checked.');
    const s = samples.find((x) => x.dx === 'bcc');
    const checked = await armOutcome(page);
    await fileInput(page).setInputFiles(join(DATA, 'images', s.file));
    const { result } = await checked();
    assert.ok(maxDiff(result, cli.get(s.image)) <= PARITY_TOLERANCE);
    assert.deepEqual(problems, []);
    await browser.close();
  });

  test('an engine that runs out of memory, starting or loading the model: the page says so instead of "Starting" for ever', async () => {
    // (The CPU-only engine these pages load asks for 19 pages to start, the WebGPU one 42.)
    for (const [pages, said] of [
      [10, /^The classifier engine could not start: the browser could not give it memory \(.+\)\. Close other tabs or apps and try again\.$/],
      [100, /^The classifier crashed \(out of memory, or a fault inside it: unreachable\)\. Reload the page to start again\.$/],
    ]) {
      const browser = await launch({ webgpu: false, wasmPages: pages });
      const page = await (await browser.newContext()).newPage();
      await page.goto(site.url);
      const failed = await page.evaluate(async () => {
        await customElements.whenDefined('derm-screen');
        const late = new Promise((resolve) => { setTimeout(() => resolve('still loading after 60 s'), 60_000); });
        return Promise.race([document.querySelector('derm-screen').ready.then(() => 'loaded', (e) => e.message), late]);
      });
      assert.match(failed, said, `${pages} pages`);
      assert.equal(await page.locator('derm-screen .status').innerText(), 'The classifier could not be loaded.');
      assert.equal(await page.locator('derm-screen .error').innerText().then((t) => t.split('\n')[0]), failed);
      await browser.close();
    }
  });
});

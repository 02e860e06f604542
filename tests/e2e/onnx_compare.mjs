// The app's engine beside onnxruntime on the same network (the shipped weights exported by
// `dermscreen export-onnx`, DERMSCREEN_ONNX): in the browser (onnxruntime-web, wasm, 1 thread,
// against the engine's CPU backend) and natively (onnxruntime-node against the native bench's
// lines in target/bench/native.jsonl). Each also checks that both give the same probabilities.
import { readFileSync, existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { DATA, ROOT, median, serveSite } from './harness.mjs';

const require = createRequire(import.meta.url);
export const ONNX = process.env.DERMSCREEN_ONNX ?? join(ROOT, 'target/bench/model.onnx');
const ORT_WEB_DIST = join(import.meta.dirname, 'node_modules/onnxruntime-web/dist');
const round = (x, d = 2) => Number(x.toFixed(d));

/**
 * A page holding the engine (CPU backend) and an onnxruntime-web session on the ONNX file
 * `onnx`, side by side, with `samples` loaded. Close with `close()`.
 */
export async function openComparison(browser, samples, onnx = ONNX) {
  if (!existsSync(onnx)) throw new Error(`${onnx} is missing: run \`dermscreen export-onnx --out ${onnx}\` (./build.sh bench does)`);
  const bench = join(dirname(onnx), 'web');
  mkdirSync(bench, { recursive: true });
  writeFileSync(join(bench, 'blank.html'), '<!doctype html><meta charset="utf-8"><title>bench</title>\n');
  const site = await serveSite(undefined, { '/__ort/': ORT_WEB_DIST, '/__bench/': bench, '/__onnx/': dirname(onnx) });
  const page = await (await browser.newContext()).newPage();
  await page.goto(`${site.url}/__bench/blank.html`);
  const onnxFile = onnx.split('/').pop();
  await page.evaluate(async (onnxFile) => {
    // The engine build a page runs on the CPU (www/engine.js).
    const m = await import('/pkg-cpu/dermscreen.js');
    await m.default();
    const get = async (p) => new Uint8Array(await (await fetch(p)).arrayBuffer());
    const meta = await (await fetch('/model/model.json')).json();
    const engine = await m.Engine.load(JSON.stringify(meta), await get('/model/model.bpk'), 'cpu');
    const ort = await import('/__ort/ort.wasm.min.mjs');
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.wasmPaths = '/__ort/';
    const session = await ort.InferenceSession.create(`/__onnx/${onnxFile}`, { executionProviders: ['wasm'] });
    const { input_size: s, mean, std } = meta.preprocess;
    // What an onnxruntime-web app does per photo: decode and resize with the browser's own
    // image code (the centre square, as the engine crops), normalise, run.
    const toInput = async (blob) => {
      const bmp = await createImageBitmap(blob);
      const side = Math.min(bmp.width, bmp.height);
      const ctx = new OffscreenCanvas(s, s).getContext('2d');
      ctx.drawImage(bmp, (bmp.width - side) / 2, (bmp.height - side) / 2, side, side, 0, 0, s, s);
      const px = ctx.getImageData(0, 0, s, s).data;
      const x = new Float32Array(3 * s * s);
      for (let i = 0; i < s * s; i++) for (let c = 0; c < 3; c++) x[c * s * s + i] = (px[4 * i + c] / 255 - mean[c]) / std[c];
      return x;
    };
    const runAll = (x) => session.run({ image: new ort.Tensor('float32', x, [x.length / (3 * s * s), 3, s, s]) });
    const run = async (x) => (await runAll(x)).probabilities.data;
    window.__bench = { engine, toInput, run, runAll, s };
  }, onnxFile);
  const bytes = samples.map((x) => [...readFileSync(join(DATA, 'images', x.file))]);
  await page.evaluate((bytes) => { window.__bench.photos = bytes.map((b) => new Uint8Array(b)); }, bytes);
  return { page, close: async () => { await page.context().close(); site.server.close(); } };
}

/** One round over the photos, both engines interleaved photo by photo: page-side times in ms. */
function interleavedRound(page) {
  return page.evaluate(async () => {
    const { engine, toInput, run, photos } = window.__bench;
    const t = { dermscreen: [], ort: [], ortRun: [] };
    for (const bytes of photos) {
      let s = performance.now();
      await engine.classifyFile(bytes, 'x.jpg');
      t.dermscreen.push(performance.now() - s);
      s = performance.now();
      const x = await toInput(new Blob([bytes]));
      const r = performance.now();
      await run(x);
      t.ortRun.push(performance.now() - r);
      t.ort.push(performance.now() - s);
    }
    return t;
  });
}

/** The engine's inputs and calibrated class probabilities for every photo (for parity checks). */
function engineOutputs(page) {
  return page.evaluate(async () => {
    const { engine, photos } = window.__bench;
    const out = [];
    for (const bytes of photos) {
      const input = engine.inputFile(bytes);
      const r = await engine.classifyFile(bytes, 'x.jpg');
      out.push({ input: [...input], probs: r.classes.map((c) => c.probability), lesionScore: r.lesion_score, domain: r.domain });
    }
    return out;
  });
}

const maxAbs = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

/**
 * The engine beside onnxruntime-web on the engine's own inputs, over the page's photos: the
 * largest difference of the calibrated class probabilities (`worst`) and of the gate's lesion
 * score (`worstLesionScore`), how many photos the graph's kind-of-photo head reads as the
 * engine does (`sameKind` of `withKind`), and the engine's outputs.
 */
export async function parity(page) {
  const outputs = await engineOutputs(page);
  const ort = await page.evaluate(async (inputs) => {
    const res = [];
    for (const x of inputs) {
      const r = await window.__bench.runAll(Float32Array.from(x));
      res.push({ probs: [...r.probabilities.data], lesionScore: r.lesion_score?.data[0], dermoscopicLogit: r.dermoscopic_logit?.data[0] });
    }
    return res;
  }, outputs.map((o) => o.input));
  const withKind = outputs.filter((o) => o.domain !== undefined).length;
  const sameKind = outputs.filter((o, i) => o.domain !== undefined && o.domain === (ort[i].dermoscopicLogit >= 0 ? 'dermoscopic' : 'clinical')).length;
  return {
    worst: Math.max(...outputs.map((o, i) => maxAbs(o.probs, ort[i].probs))),
    worstLesionScore: Math.max(...outputs.map((o, i) => Math.abs(o.lesionScore - ort[i].lesionScore))),
    withKind,
    sameKind,
    outputs,
  };
}

/** Side of the square network input the outputs were computed at (`input` is `3 * s * s` floats). */
const inputSide = (outputs) => Math.round(Math.sqrt(outputs[0].input.length / 3));

/**
 * Browser: per photo (decode, the model's input size, 3 test-time views, probabilities), the engine's CPU path
 * and onnxruntime-web's wasm backend on one thread, interleaved over `rounds`. Prints JSON lines
 * and returns the engine's outputs for the native comparison.
 */
export async function compareInBrowser(browser, samples, rounds = 3) {
  const { page, close } = await openComparison(browser, samples);
  try {
    await interleavedRound(page); // warm-up: both engines compile their code on first use
    const t = { dermscreen: [], ort: [], ortRun: [] };
    for (let r = 0; r < rounds; r++) {
      const one = await interleavedRound(page);
      for (const k of Object.keys(t)) t[k].push(...one[k]);
    }
    const { worst, outputs } = await parity(page);
    console.log(JSON.stringify({
      bench: 'browser_cpu_vs_onnxruntime_web',
      browser: `${browser.version()} headless`,
      photos: t.dermscreen.length,
      dermscreen_ms_median: round(median(t.dermscreen)),
      onnxruntime_web_ms_median: round(median(t.ort)),
      onnxruntime_web_session_run_ms_median: round(median(t.ortRun)),
      dermscreen_over_onnxruntime_web: round(median(t.dermscreen) / median(t.ort)),
      setting: `decode + ${inputSide(outputs)} px + 3 views + probabilities; onnxruntime-web 1.30 wasm EP, 1 thread; engine ?backend=cpu (flex, SIMD128, 1 thread)`,
    }));
    console.log(JSON.stringify({ bench: 'onnxruntime_web_parity', photos: outputs.length, max_abs_probability_diff: worst }));
    return outputs;
  } finally {
    await close();
  }
}

/**
 * Native: onnxruntime-node on the engine's preprocessed inputs, per photo and in batches of 32,
 * beside the native bench's Burn flex lines (same inputs' shape, all cores for both).
 */
export async function compareNative(outputs, iterations = 10) {
  const ort = require('onnxruntime-node');
  const session = await ort.InferenceSession.create(ONNX);
  const side = inputSide(outputs);
  const tensor = (xs) => new ort.Tensor('float32', Float32Array.from(xs.flat()), [xs.length, 3, side, side]);
  const run = async (xs) => (await session.run({ image: tensor(xs) })).probabilities.data;
  let worst = 0;
  for (const o of outputs) worst = Math.max(worst, maxAbs(o.probs, await run([o.input])));
  const time = async (xs, n) => {
    const t = [];
    for (let i = 0; i < n; i++) { const s = performance.now(); await run(xs); t.push(performance.now() - s); }
    return median(t);
  };
  const one = [outputs[0].input];
  const batch = Array.from({ length: 32 }, (_, i) => outputs[i % outputs.length].input);
  await time(one, 3);
  const single = await time(one, iterations * 3);
  const batched = await time(batch, iterations);
  // The native bench's lines, which ./build.sh bench writes first (absent: no ratio).
  const lines = join(ROOT, 'target/bench/native.jsonl');
  const native = new Map(existsSync(lines)
    ? readFileSync(lines, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).map((l) => [l.bench, l])
    : []);
  const flex1 = native.get('classify_batch1_flex')?.value;
  const flex32 = native.get('classify_batch32_flex')?.value;
  console.log(JSON.stringify({
    bench: 'native_vs_onnxruntime',
    onnxruntime_node_batch1_ms: round(single),
    onnxruntime_node_batch32_images_per_s: round(32e3 / batched, 1),
    burn_flex_batch1_ms: flex1,
    burn_flex_batch32_images_per_s: flex32,
    burn_over_onnxruntime_batch1: flex1 ? round(flex1 / single) : null,
    onnxruntime_over_burn_batch32_throughput: flex32 ? round(32e3 / batched / flex32) : null,
    setting: `preprocessed ${side} px input, 3 views, probabilities; onnxruntime-node 1.30 CPU EP, default threads; Burn flex with rayon; all cores of this machine`,
  }));
  console.log(JSON.stringify({ bench: 'onnxruntime_native_parity', photos: outputs.length, max_abs_probability_diff: worst }));
}

// Browser benchmark (run by `./build.sh bench`): one JSON object per line.
// For each backend: time from navigation to a ready engine (wasm, weights, device, warm-up), and
// per-image latency of classify() (decode + preprocess + 3 test-time views + readback) over
// validation images, after one untimed image, and of the saliency map for three of them. Also the
// size of what a first visit downloads, and the same network in onnxruntime (web and native)
// beside the engine (onnx_compare.mjs).
import { readFileSync, statSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { compareInBrowser, compareNative } from './onnx_compare.mjs';
import { SITE, classifyInPage, countGpuCalls, gpuCallsFor, launch, median, openApp, sampleImages, serveSite } from './harness.mjs';

const n = Number(process.argv[2] ?? 10);

// The engine with WebGPU, and the CPU-only one that a page running on the CPU downloads instead.
const wasm = join(SITE, 'pkg/dermscreen_bg.wasm');
const wasmCpu = join(SITE, 'pkg-cpu/dermscreen_bg.wasm');
console.log(JSON.stringify({
  bench: 'web_download',
  wasm_bytes: statSync(wasm).size,
  wasm_gzip_bytes: gzipSync(readFileSync(wasm), { level: 9 }).length,
  wasm_cpu_only_bytes: statSync(wasmCpu).size,
  wasm_cpu_only_gzip_bytes: gzipSync(readFileSync(wasmCpu), { level: 9 }).length,
  weights_bytes: statSync(join(SITE, 'model/model.bpk')).size,
}));

const site = await serveSite();
const samples = sampleImages(Math.ceil((n + 1) / 7)).slice(0, n + 1);
const browser = await launch({ webgpu: true });
try {
  for (const backend of ['webgpu', 'cpu']) {
    const context = await browser.newContext();
    await countGpuCalls(context);
    const { page, ready } = await openApp(context, site.url, { backend });
    await classifyInPage(page, samples[0].file);
    if (backend === 'webgpu') {
      // WebGPU calls of one photo after the first (the e2e test holds them to a budget).
      console.log(JSON.stringify({ bench: 'webgpu_calls_per_photo', ...(await gpuCallsFor(page, samples[1].file)) }));
    }
    const times = [];
    const saliency = [];
    for (const s of samples.slice(1)) {
      times.push((await classifyInPage(page, s.file)).ms);
      // Where the model looked, as the result's toggle computes it (engine time, on demand).
      // One on WebGPU: the software adapter here takes seconds per map.
      if (saliency.length < (backend === 'cpu' ? 3 : 1)) saliency.push(await page.evaluate(async () => (await document.querySelector('derm-screen').showSaliency()).ms));
    }
    console.log(JSON.stringify({
      bench: 'browser_classify',
      backend,
      browser: `${browser.version()} headless${backend === 'webgpu' ? ', SwiftShader WebGPU adapter' : ', wasm SIMD128, 1 thread'}`,
      images: times.length,
      ready_ms: Math.round(ready.loadMs),
      warm_up_ms: Math.round(ready.warmUpMs),
      ms_per_image_median: Number(median(times).toFixed(1)),
      ms_per_image_min: Number(Math.min(...times).toFixed(1)),
    }));
    console.log(JSON.stringify({
      bench: 'browser_saliency',
      backend,
      images: saliency.length,
      ms_per_image_median: Math.round(median(saliency)),
      over_classify: Number((median(saliency) / median(times)).toFixed(1)),
    }));
    await context.close();
  }
  await compareNative(await compareInBrowser(browser, samples.slice(1), 3), n);
} finally {
  await browser.close();
  site.server.close();
}

// The classifier engine as the page sees it: the wasm module, the model download, the backend
// choice and a guard against crashes inside wasm. No DOM here; <derm-screen> and other hosts
// build on it.

// Two builds of the same engine (build.sh): `full`, with WebGPU, and `cpu`, without it, a quarter
// of the download, for pages that run on the CPU. Each folder has its wasm and its JS bindings.
const PKGS = { full: 'pkg', cpu: 'pkg-cpu' };
const bindings = (kind) => new URL(`./${PKGS[kind]}/dermscreen.js`, import.meta.url).href;
const wasmUrl = (kind) => new URL(`./${PKGS[kind]}/dermscreen_bg.wasm`, import.meta.url).href;

// At most one wasm instance of each build and one engine per (model, backend) per page: WebGPU
// can be initialised only once per page, and the weights need not be downloaded twice.
const wasmModules = {};
const wasmExports = {};
let crashed = null;
const crashListeners = new Set();
const engines = new Map();

// Called by the Rust panic hook (src/web.rs, PANIC_CALLBACK).
globalThis.__dermscreenPanic = (message) => {
  crashed = message;
  for (const reject of crashListeners) reject(new Error(`The classifier crashed (${message}). Reload the page to start again.`));
  crashListeners.clear();
};

// A trap in the engine that no panic announced first: in wasm, running out of memory aborts
// without one. It is thrown from one of the module's own tasks, not to the call it belonged to,
// whose promise would never settle ("Starting the classifier…" or "Checking…" for ever).
const WASM = Object.keys(PKGS).map(wasmUrl);
globalThis.addEventListener?.('error', (event) => {
  if (crashed === null && event.error instanceof WebAssembly.RuntimeError && WASM.includes(event.filename)) {
    globalThis.__dermscreenPanic(`out of memory, or a fault inside it: ${event.error.message}`);
  }
});

/** Races a call into wasm against a crash, which would otherwise leave its promise pending forever. */
export function guarded(promise) {
  if (crashed) return Promise.reject(new Error(`The classifier crashed earlier (${crashed}). Reload the page.`));
  let reject;
  const crash = new Promise((_, r) => { reject = r; crashListeners.add(r); });
  return Promise.race([promise, crash]).finally(() => crashListeners.delete(reject));
}

/** Whether the engine has crashed on this page: then only a reload brings it back. */
export const hasCrashed = () => crashed !== null;

/** Whether this browser can run the classifier: WebAssembly with SIMD, and fetch. */
export function isSupported() {
  try {
    // (module (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)): validates only with SIMD128.
    const simd = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
      65, 0, 253, 15, 253, 98, 11]);
    return typeof WebAssembly === 'object' && WebAssembly.validate(simd) && typeof fetch === 'function';
  } catch {
    return false;
  }
}

/** Bytes of the engine's wasm memory (it can only grow), or 0 before the engine starts. */
export function wasmMemoryBytes() {
  return Object.values(wasmExports).reduce((sum, e) => sum + (e.memory?.buffer.byteLength ?? 0), 0);
}

/** The engine builds this page has loaded (`full`, `cpu`): what the service worker keeps offline. */
export const loadedBuilds = () => Object.keys(wasmExports);

function loadWasm(kind) {
  if (!wasmModules[kind]) {
    wasmModules[kind] = import(bindings(kind)).then(async (m) => { wasmExports[kind] = await m.default(); return m; });
    wasmModules[kind].catch(() => { delete wasmModules[kind]; });
  }
  return wasmModules[kind];
}

/** Whether this device saved an engine build for offline use (the service worker's cache). */
async function saved(kind) {
  try { return Boolean(await caches.match(wasmUrl(kind))); } catch { return false; }
}

/**
 * The engine build for `backend` ("cpu" the CPU-only one, else the one with WebGPU), or where it
 * cannot be downloaded and the other is saved on the device (offline, after visits that used the
 * other) the other: the full build runs the CPU too, and the CPU-only one runs a WebGPU request
 * on the CPU, with `reason` saying why. A download that broke off is not retried as the other
 * build, which is no more likely to arrive.
 */
async function engineBuild(backend) {
  const [kind, other] = backend === 'cpu' ? ['cpu', 'full'] : ['full', 'cpu'];
  try {
    return { wasm: await loadWasm(kind), backend, reason: null };
  } catch (e) {
    // A failed download is a TypeError; an engine that cannot start would fail as the other too.
    if (!(e instanceof TypeError) || !(await saved(other))) throw e;
    const wasm = await loadWasm(other).catch(() => { throw e; });
    return other === 'full' ? { wasm, backend, reason: null }
      : { wasm, backend: 'cpu', reason: `the WebGPU engine could not be downloaded (${e.message})` };
  }
}

async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    // A browser reports a fetch that CORS blocked exactly as one that never reached the server,
    // so when the model is on another origin (an embedding site) both causes are named.
    const origin = new URL(url, location.href).origin;
    const embedded = origin === location.origin ? ''
      : ` If the connection works, ${origin} does not let this site load it: it must send Access-Control-Allow-Origin.`;
    throw new Error(`Could not download ${what} (${e.message}). Check the connection and try again.${embedded}`);
  }
  if (!response.ok) throw new Error(`Could not download ${what}: the server answered ${response.status} for ${url}.`);
  return response;
}

/** A size in (decimal) MB to a tenth, as every message on the page gives it: `mb(3079440)` is "3.1". */
export const mb = (bytes) => (bytes / 1e6).toFixed(1);

/** How far a download has come: "1.5 of 3.1 MB", or "1.5 MB" when the size is not known (`total` 0). */
export const progressText = (received, total) => `${mb(received)}${total ? ` of ${mb(total)}` : ''} MB`;

/** The error for a download that failed after it began: `why` says how. */
const downloadFailed = (what, why) =>
  new Error(`Could not download ${what}: ${why}. Check the connection and try again.`);

/** The error for a download that broke off after it began (`got`: how far it had come). */
const brokeOff = (what, e, got = '') => downloadFailed(what, `the connection broke${got} (${e.message})`);

/** Downloads the weights, reporting progress, and returns their bytes. */
async function fetchWeights(url, expectedBytes, onProgress) {
  const response = await fetchOk(url, 'the model weights');
  const total = expectedBytes || Number(response.headers.get('content-length')) || 0;
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      received += value.length;
      onProgress({ phase: 'download', received, total });
    }
  } catch (e) {
    throw brokeOff('the model weights', e, ` after ${progressText(received, total)}`);
  }
  if (total && received < total) {
    throw downloadFailed('the model weights', `the download ended after ${progressText(received, total)}`);
  }
  const bytes = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

/**
 * Resolves "auto" and "webgpu" as far as the browser can tell without running the model. No
 * WebGPU or no adapter means the CPU for both, with the reason. For "auto", only a software
 * adapter (`isFallbackAdapter`, such as SwiftShader: ten times slower than the CPU path here)
 * means the CPU too, and a hardware adapter means "measure".
 */
async function resolveBackend(requested) {
  if (requested !== 'auto' && requested !== 'webgpu') return { backend: requested, reason: null };
  let adapter = null;
  try { adapter = await navigator.gpu?.requestAdapter(); } catch { /* treated as no adapter */ }
  if (!adapter) {
    // Asked for WebGPU or not, a phone without it still gets a working classifier.
    const problem = navigator.gpu ? 'WebGPU gave no adapter' : 'this browser has no WebGPU';
    return { backend: 'cpu', reason: requested === 'webgpu' ? `WebGPU was asked for, but ${problem}` : problem };
  }
  if (requested === 'webgpu') return { backend: 'webgpu', reason: null };
  if (adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter) {
    return { backend: 'cpu', reason: 'the only WebGPU adapter is a software emulation, slower than the CPU path' };
  }
  return { backend: 'measure', reason: null };
}

/**
 * Loads (once per page) the engine for a model URL and backend ("auto", "webgpu" or "cpu").
 * Resolves to { engine, backend, backendReason, fallbackReason, model, loadMs, warmUpMs };
 * `onProgress` gets { phase: 'engine' | 'download' | 'device' | 'warmup' | 'measure', received?, total? }.
 * Before the steps that hold the page's thread (device, warmup, measure) the load waits for
 * what `onProgress` returns, so a host can have its status drawn first.
 */
export async function loadEngine(modelUrl, requested = 'auto', onProgress = () => {}) {
  const { backend, reason } = await resolveBackend(requested);
  const key = `${modelUrl}|${backend}`;
  if (!engines.has(key)) {
    const loading = startEngine(modelUrl, backend, reason, onProgress);
    engines.set(key, loading);
    loading.catch(() => engines.delete(key));
  }
  return engines.get(key);
}

// Where "auto" keeps what it measured, per model and browser, so later visits load one backend.
const CHOICE_KEY = 'dermscreen-backend-choice';

function rememberedChoice(id) {
  try {
    const saved = JSON.parse(localStorage.getItem(CHOICE_KEY) ?? 'null');
    return saved?.id === id ? saved : null;
  } catch {
    return null; // storage blocked or corrupt: measure again
  }
}

function rememberChoice(choice) {
  try { localStorage.setItem(CHOICE_KEY, JSON.stringify(choice)); } catch { /* storage blocked: measure next time */ }
}

const ms = (t) => `${Math.round(t).toLocaleString('en')} ms`;

async function startEngine(modelUrl, requested, resolvedReason, onProgress) {
  const started = performance.now();
  onProgress({ phase: 'engine' });
  const { wasm, backend, reason: buildReason } = await engineBuild(requested).catch((e) => {
    // A download that failed or broke off is a TypeError (of the module's import or of the
    // wasm's streaming compile); a browser that could not give the engine its memory (a phone
    // short of it) a RangeError; one that cannot compile or link the engine throws others.
    if (e instanceof TypeError) throw new Error(`Could not download the classifier engine (${e.message}). Check the connection and try again.`);
    if (e instanceof RangeError && /memory/i.test(e.message)) {
      throw new Error(`The classifier engine could not start: the browser could not give it memory (${e.message}). Close other tabs or apps and try again.`);
    }
    throw new Error(`The classifier engine could not start (${e.message}). This browser may be too old.`);
  });
  const metaResponse = await fetchOk(modelUrl, 'the model description');
  const metaText = await metaResponse.text().catch((e) => { throw brokeOff('the model description', e); });
  let meta;
  try { meta = JSON.parse(metaText); } catch { throw new Error(`${modelUrl} is not a model description (not JSON).`); }
  const weightsUrl = new URL(meta?.weights?.file ?? 'model.bpk', metaResponse.url);
  const weights = await fetchWeights(weightsUrl, meta?.weights?.bytes, onProgress);
  const open = async (name) => {
    await onProgress({ phase: 'device' });
    const engine = await guarded(wasm.Engine.load(metaText, weights, name));
    await onProgress({ phase: 'warmup' });
    return { engine, warmUpMs: await guarded(engine.warmUp()) };
  };
  const reason = buildReason ?? resolvedReason;
  const chosen = backend === 'measure' ? await measureBackends(open, meta, onProgress)
    : backend === 'webgpu' ? await webgpuOrCpu(open)
      : { ...(await open(backend)), reason };
  const { engine } = chosen;
  return {
    engine,
    backend: engine.backend,
    backendReason: chosen.reason ?? engine.fallbackReason ?? null,
    fallbackReason: engine.backend === 'cpu' ? (chosen.reason ?? engine.fallbackReason ?? null) : null,
    model: engine.modelInfo(),
    loadMs: performance.now() - started,
    warmUpMs: chosen.warmUpMs,
  };
}

/**
 * Brings `loaded` (what `loadEngine` resolved to) up to date after a check: where WebGPU stops
 * working on a page, the engine moves to the CPU for good (src/web.rs) and says why.
 */
export function followBackend(loaded) {
  const { engine } = loaded;
  if (engine.backend === loaded.backend) return;
  loaded.backend = engine.backend;
  loaded.backendReason = loaded.fallbackReason = engine.fallbackReason ?? null;
}

/**
 * WebGPU asked for (a host's backend="webgpu", ?backend=webgpu) on an adapter that then fails
 * to start: the CPU, with the reason shown. (No adapter at all is settled in resolveBackend.)
 */
async function webgpuOrCpu(open) {
  try {
    return { ...(await open('webgpu')), reason: null };
  } catch (e) {
    return { ...(await open('cpu')), reason: `WebGPU was asked for, but it could not start (${e.message})` };
  }
}

/**
 * "auto" on a hardware adapter: the faster backend on this device, by measurement. Both are
 * loaded from the one download and warmed up (shaders compile, buffers are allocated), then a
 * second run on each is timed and the slower one freed. The result is remembered for this
 * model (its SHA-256) and browser, so later visits load only the winner.
 */
async function measureBackends(open, meta, onProgress) {
  const id = `${meta?.weights?.sha256}|${navigator.userAgent}`;
  const saved = rememberedChoice(id);
  // A remembered WebGPU that no longer starts (a driver update, a blocklist) is measured again.
  const reopened = saved && (await open(saved.backend).catch(() => null));
  if (reopened) {
    // (One that stopped working as it warmed up says so instead, and runs on the CPU.)
    const reason = reopened.engine.backend === saved.backend
      ? `chosen earlier on this device by measurement: WebGPU ${ms(saved.webgpuMs)}, CPU ${ms(saved.cpuMs)} per photo`
      : reopened.engine.fallbackReason;
    return { ...reopened, reason };
  }
  let gpu;
  try {
    gpu = await open('webgpu');
  } catch (e) {
    return { ...(await open('cpu')), reason: `WebGPU could not start (${e.message})` };
  }
  // WebGPU that stops working while it warms up or is timed has moved to the CPU (src/web.rs):
  // there is nothing to compare, and nothing to remember for the next visit.
  if (gpu.engine.backend !== 'webgpu') return { ...gpu, reason: gpu.engine.fallbackReason };
  const cpu = await open('cpu');
  await onProgress({ phase: 'measure' });
  const webgpuMs = await guarded(gpu.engine.warmUp());
  if (gpu.engine.backend !== 'webgpu') {
    const reason = gpu.engine.fallbackReason;
    gpu.engine.free();
    return { ...cpu, reason };
  }
  const cpuMs = await guarded(cpu.engine.warmUp());
  const [winner, loser] = webgpuMs < cpuMs ? [gpu, cpu] : [cpu, gpu];
  loser.engine.free();
  rememberChoice({ id, backend: winner.engine.backend, webgpuMs, cpuMs });
  const faster = winner === gpu ? 'WebGPU' : 'the CPU';
  return { ...winner, reason: `measured here, ${faster} is faster: WebGPU ${ms(webgpuMs)}, CPU ${ms(cpuMs)} per photo` };
}

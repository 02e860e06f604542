// <derm-screen>: the dermscreen classifier as a custom element.
//
// Attributes
//   model-url   URL of model.json (default: model/model.json beside this script)
//   camera      "off" hides the camera; anything else offers it
//   backend     "auto" (default: WebGPU when the browser gives an adapter, else CPU), "webgpu", "cpu"
// Events (bubbling, composed)
//   dermscreen:result  detail: the CLI's `classify --format json` object for the image
//   dermscreen:error   detail: { kind: "input" | "camera" | "model" | "engine", message }
// Methods and properties
//   DermScreen.isSupported()  whether this browser can run the classifier at all
//   el.ready                  promise of { backend, fallbackReason, model, loadMs, warmUpMs }
//   el.classify(blob, name)   classifies an image file; resolves to the result object
//
// Everything runs in this browser: no image leaves the device.

const PKG = new URL('./pkg/dermscreen.js', import.meta.url);
const DEFAULT_MODEL = new URL('./model/model.json', import.meta.url);
const MAX_FILE_BYTES = 60 * 1024 * 1024;
// Side of the capture square as a fraction of the shorter side of the camera frame; the
// on-screen guide shows the same square.
const GUIDE_FRACTION = 0.7;
// Camera crops are scaled to at most this side before they go to the classifier.
const CAPTURE_MAX_SIDE = 448;

// One wasm instance and one engine per (model, backend) per page: WebGPU can be initialised
// only once per page, and the weights need not be downloaded twice.
let wasmModule = null;
let crashed = null;
const crashListeners = new Set();
const engines = new Map();

globalThis.__dermscreenPanic = (message) => {
  crashed = message;
  for (const reject of crashListeners) reject(new Error(`The classifier crashed (${message}). Reload the page to start again.`));
  crashListeners.clear();
};

/** Races a call into wasm against a crash, which would otherwise leave its promise pending forever. */
function guarded(promise) {
  if (crashed) return Promise.reject(new Error(`The classifier crashed earlier (${crashed}). Reload the page.`));
  let reject;
  const crash = new Promise((_, r) => { reject = r; crashListeners.add(r); });
  return Promise.race([promise, crash]).finally(() => crashListeners.delete(reject));
}

function loadWasm() {
  if (!wasmModule) {
    wasmModule = import(PKG.href).then(async (m) => { await m.default(); return m; });
    wasmModule.catch(() => { wasmModule = null; });
  }
  return wasmModule;
}

async function fetchOk(url, what) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`Could not download ${what} (${e.message}). Check the connection and reload.`);
  }
  if (!response.ok) throw new Error(`Could not download ${what}: the server answered ${response.status} for ${url}.`);
  return response;
}

/** Downloads the weights, reporting progress, and returns their bytes. */
async function fetchWeights(url, expectedBytes, onProgress) {
  const response = await fetchOk(url, 'the model weights');
  const total = expectedBytes || Number(response.headers.get('content-length')) || 0;
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    onProgress({ phase: 'download', received, total });
  }
  const bytes = new Uint8Array(received);
  let at = 0;
  for (const c of chunks) { bytes.set(c, at); at += c.length; }
  return bytes;
}

/**
 * Resolves "auto" before the engine starts. WebGPU is used when the browser has a hardware
 * adapter; a software one (`isFallbackAdapter`, such as SwiftShader) ran this model about ten
 * times slower than the wasm CPU path here, so the CPU is chosen instead, and the reason kept.
 */
async function resolveBackend(requested) {
  if (requested !== 'auto') return { backend: requested, reason: null };
  if (!navigator.gpu) return { backend: 'cpu', reason: 'this browser has no WebGPU' };
  let adapter = null;
  try { adapter = await navigator.gpu.requestAdapter(); } catch { /* treated as no adapter */ }
  if (!adapter) return { backend: 'cpu', reason: 'WebGPU gave no adapter' };
  if (adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter) {
    return { backend: 'cpu', reason: 'the only WebGPU adapter is a software emulation, slower than the CPU path' };
  }
  // Rust still falls back to the CPU if the WebGPU device cannot be created.
  return { backend: 'auto', reason: null };
}

/** Loads (once per page) the engine for a model URL and backend ("auto", "webgpu" or "cpu"). */
export async function loadEngine(modelUrl, requested = 'auto', onProgress = () => {}) {
  const { backend, reason } = await resolveBackend(requested);
  const key = `${modelUrl}|${backend}`;
  if (!engines.has(key)) {
    const started = performance.now();
    const loading = (async () => {
      onProgress({ phase: 'engine' });
      const wasm = await loadWasm().catch((e) => {
        throw new Error(`The classifier engine could not start (${e.message}). This browser may be too old.`);
      });
      const metaResponse = await fetchOk(modelUrl, 'the model description');
      const metaText = await metaResponse.text();
      let meta;
      try { meta = JSON.parse(metaText); } catch { throw new Error(`${modelUrl} is not a model description (not JSON).`); }
      const weightsUrl = new URL(meta?.weights?.file ?? 'model.bpk', metaResponse.url);
      const weights = await fetchWeights(weightsUrl, meta?.weights?.bytes, onProgress);
      onProgress({ phase: 'device' });
      const engine = await guarded(wasm.Engine.load(metaText, weights, backend));
      onProgress({ phase: 'warmup' });
      const warmUpMs = await guarded(engine.warmUp());
      return {
        engine,
        backend: engine.backend,
        fallbackReason: reason ?? engine.fallbackReason ?? null,
        model: engine.modelInfo(),
        loadMs: performance.now() - started,
        warmUpMs,
      };
    })();
    engines.set(key, loading);
    loading.catch(() => engines.delete(key));
  }
  return engines.get(key);
}

const CSS = `
:host { display: block; font: 1rem/1.5 system-ui, sans-serif; color: #1a1a1a; max-width: 40rem; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
button { font: inherit; min-height: 44px; padding: 0.5rem 1rem; border-radius: 0.5rem; border: 2px solid #1d4f91;
  background: #1d4f91; color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: #1d4f91; }
button:disabled { opacity: 0.55; cursor: not-allowed; }
button:focus-visible, .drop:focus-visible, summary:focus-visible { outline: 3px solid #b35900; outline-offset: 2px; }
.drop { border: 2px dashed #5b6b7f; border-radius: 0.75rem; padding: 1rem; text-align: center; background: #f6f8fb; }
.drop.over { background: #e3edf9; border-color: #1d4f91; }
.buttons { display: flex; flex-wrap: wrap; gap: 0.5rem; justify-content: center; margin-top: 0.5rem; }
.camera { position: relative; width: 100%; aspect-ratio: 1; background: #000; border-radius: 0.75rem; overflow: hidden; }
.camera video { width: 100%; height: 100%; object-fit: cover; }
.guide { position: absolute; inset: 0; margin: auto; width: ${GUIDE_FRACTION * 100}%; aspect-ratio: 1;
  border: 3px solid #fff; border-radius: 0.5rem; box-shadow: 0 0 0 100vmax rgba(0,0,0,0.45); pointer-events: none; }
.guide-text { position: absolute; left: 0; right: 0; bottom: 0.5rem; text-align: center; color: #fff; font-size: 0.9rem; }
.status { margin: 0.75rem 0; color: #3d4a5c; font-size: 0.95rem; }
progress { width: 100%; height: 0.75rem; }
.notice { border-left: 4px solid #b35900; background: #fff4e5; padding: 0.5rem 0.75rem; margin: 0.75rem 0; }
.error { border-left: 4px solid #a31515; background: #fdecec; padding: 0.5rem 0.75rem; margin: 0.75rem 0; }
.result { border: 1px solid #c9d2dd; border-radius: 0.75rem; padding: 1rem; margin-top: 0.75rem; }
.result-head { display: flex; gap: 1rem; align-items: flex-start; }
.result-head img { width: 96px; height: 96px; object-fit: cover; border-radius: 0.5rem; flex: none; }
.risk { font-size: 1.2rem; font-weight: 700; margin: 0; }
.risk.high { color: #a31515; }
.risk.low { color: #1b5e20; }
.advice { margin: 0.25rem 0 0; }
.advice.high { font-weight: 700; }
ol.top { padding-left: 1.25rem; }
.bar { display: block; height: 0.5rem; background: #e3e8ef; border-radius: 0.25rem; overflow: hidden; margin: 0.15rem 0 0.4rem; }
.bar > span { display: block; height: 100%; background: #1d4f91; }
.tree ul { list-style: none; padding-left: 1rem; margin: 0.25rem 0; border-left: 1px solid #c9d2dd; }
.tree > ul { padding-left: 0; border-left: 0; }
.pct { font-variant-numeric: tabular-nums; font-weight: 600; }
.meta { font-size: 0.85rem; color: #3d4a5c; margin-top: 0.75rem; }
.disclaimer { font-size: 0.9rem; color: #3d4a5c; margin-top: 0.75rem; }
`;

const TEMPLATE = `
<div class="camera" part="camera" hidden>
  <video playsinline muted aria-label="Camera preview"></video>
  <div class="guide" aria-hidden="true"></div>
  <div class="guide-text" aria-hidden="true">Fit the spot inside the square, about a hand's width away</div>
</div>
<div class="buttons camera-buttons" hidden>
  <button type="button" class="capture">Take photo</button>
  <button type="button" class="secondary torch" aria-pressed="false" hidden>Torch</button>
  <button type="button" class="secondary stop-camera">Close camera</button>
</div>
<div class="drop" tabindex="0" role="group" aria-label="Choose a photo of the skin spot">
  <div>Drop a photo of the skin spot here, or</div>
  <div class="buttons">
    <button type="button" class="pick">Choose a photo</button>
    <button type="button" class="secondary start-camera">Use the camera</button>
  </div>
  <input type="file" accept="image/*" hidden>
</div>
<div class="notice camera-notice" role="alert" hidden></div>
<div class="status" role="status"><span class="status-text">Loading the classifier…</span>
  <progress class="progress" max="1" hidden></progress></div>
<div class="error" role="alert" hidden></div>
<section class="result" aria-live="polite" aria-atomic="true" hidden></section>
<p class="disclaimer">A screening aid, not a diagnosis. It was trained on dermatoscope images of
pigmented spots and can be wrong, more so for phone photos. If a spot is new, changing, bleeding
or worrying you, see a dermatologist whatever this says.</p>
`;

const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.005 ? 1 : 0)}%`;

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

function bar(p) {
  const fill = el('span');
  fill.style.width = `${Math.max(0, Math.min(100, 100 * p))}%`;
  return el('span', { class: 'bar', 'aria-hidden': 'true' }, fill);
}

export class DermScreen extends HTMLElement {
  static get observedAttributes() { return ['camera']; }

  /** Whether this browser can run the classifier: WebAssembly with SIMD and ES modules. */
  static isSupported() {
    try {
      // (module (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)): validates only with SIMD128.
      const simd = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
        65, 0, 253, 15, 253, 98, 11]);
      return typeof WebAssembly === 'object' && WebAssembly.validate(simd) && typeof fetch === 'function';
    } catch {
      return false;
    }
  }

  constructor() {
    super();
    const root = this.attachShadow({ mode: 'open' });
    // A constructed stylesheet, not a <style> element, so host pages with a strict CSP
    // (no 'unsafe-inline' styles) still style the element.
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
    const tpl = document.createElement('template');
    tpl.innerHTML = TEMPLATE;
    root.append(tpl.content.cloneNode(true));
    this.$ = (s) => root.querySelector(s);
    this.stream = null;
    this.busy = false;
    this.ready = new Promise((resolve, reject) => { this.resolveReady = resolve; this.rejectReady = reject; });
    this.ready.catch(() => {});
  }

  connectedCallback() {
    if (this.started) return;
    this.started = true;
    const $ = this.$;
    $('.pick').addEventListener('click', () => $('input[type=file]').click());
    $('input[type=file]').addEventListener('change', (e) => {
      const file = e.target.files?.[0];
      e.target.value = '';
      if (file) this.classifyFromUi(file, file.name);
    });
    const drop = $('.drop');
    drop.addEventListener('keydown', (e) => {
      if ((e.key === 'Enter' || e.key === ' ') && e.target === drop) { e.preventDefault(); $('input[type=file]').click(); }
    });
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      const file = e.dataTransfer?.files?.[0];
      if (file) this.classifyFromUi(file, file.name);
      else this.showError('input', 'That was not a file. Drop a photo (JPEG, PNG or WebP).');
    });
    $('.start-camera').addEventListener('click', () => this.startCamera());
    $('.stop-camera').addEventListener('click', () => this.stopCamera());
    $('.capture').addEventListener('click', () => this.capture());
    $('.torch').addEventListener('click', () => this.toggleTorch());
    this.applyCameraAttribute();
    this.load();
  }

  disconnectedCallback() { this.stopCamera(); }

  attributeChangedCallback() { if (this.started) this.applyCameraAttribute(); }

  applyCameraAttribute() {
    const off = this.getAttribute('camera') === 'off';
    this.$('.start-camera').hidden = off;
    if (off) this.stopCamera();
  }

  async load() {
    const $ = this.$;
    if (!DermScreen.isSupported()) {
      const message = 'This browser cannot run the classifier (it needs WebAssembly with SIMD: a current Chrome, Edge, Firefox or Safari).';
      this.setStatus('Not available in this browser.');
      this.showError('engine', message);
      this.setInputsEnabled(false);
      this.rejectReady(new Error(message));
      return;
    }
    this.setInputsEnabled(false);
    const modelUrl = new URL(this.getAttribute('model-url') || DEFAULT_MODEL, document.baseURI).href;
    const backend = this.getAttribute('backend') || 'auto';
    const progress = $('.progress');
    try {
      const loaded = await loadEngine(modelUrl, backend, (p) => {
        if (p.phase === 'download') {
          progress.hidden = false;
          progress.value = p.total ? p.received / p.total : 0;
          this.setStatus(`Downloading the model: ${(p.received / 1e6).toFixed(1)} of ${(p.total / 1e6).toFixed(1)} MB…`);
        } else if (p.phase === 'device') {
          this.setStatus('Starting the classifier…');
        } else if (p.phase === 'warmup') {
          progress.hidden = true;
          this.setStatus('Preparing the classifier…');
        }
      });
      this.loaded = loaded;
      progress.hidden = true;
      const where = loaded.backend === 'webgpu' ? 'on the graphics chip (WebGPU)' : 'on the processor (CPU)';
      const why = loaded.backend === 'cpu' && loaded.fallbackReason ? ` (${loaded.fallbackReason})` : '';
      this.setStatus(`Ready. Runs ${where}${why}, on this device only.`);
      this.setInputsEnabled(true);
      this.resolveReady(loaded);
    } catch (e) {
      progress.hidden = true;
      this.setStatus('The classifier could not be loaded.');
      this.showError('model', `${e.message} Reload the page to try again.`);
      this.rejectReady(e);
    }
  }

  setStatus(text) { this.$('.status-text').textContent = text; }

  setInputsEnabled(on) {
    for (const b of this.shadowRoot.querySelectorAll('.pick, .start-camera, .capture')) b.disabled = !on;
  }

  showError(kind, message) {
    const box = this.$('.error');
    box.textContent = message;
    box.hidden = false;
    this.dispatchEvent(new CustomEvent('dermscreen:error', { detail: { kind, message }, bubbles: true, composed: true }));
  }

  clearError() { this.$('.error').hidden = true; }

  /** Classifies an image file (Blob) and shows the result. Resolves to the CLI's JSON object. */
  async classify(blob, name = blob.name || 'photo') {
    const { engine } = await this.ready;
    if (blob.size > MAX_FILE_BYTES) {
      throw new Error(`The file is ${(blob.size / 1e6).toFixed(0)} MB; choose a photo under ${MAX_FILE_BYTES / 1e6} MB.`);
    }
    const bytes = new Uint8Array(await blob.arrayBuffer());
    return this.run(() => engine.classifyFile(bytes, name), blob, name);
  }

  async run(call, previewBlob, name) {
    const t0 = performance.now();
    const result = await guarded(call());
    const ms = performance.now() - t0;
    this.lastTiming = { ms, backend: this.loaded.backend };
    this.showResult(result, previewBlob, ms);
    this.dispatchEvent(new CustomEvent('dermscreen:result', { detail: result, bubbles: true, composed: true }));
    return result;
  }

  classifyFromUi(blob, name) {
    return this.fromUi(name, () => this.classify(blob, name),
      (e) => `${name}: ${e.message}. Try a different photo: a sharp JPEG, PNG or WebP at least 32 pixels wide.`);
  }

  /** Runs one check started from the page: one at a time, with its status and any error shown. */
  async fromUi(label, work, explain) {
    if (this.busy) return;
    this.busy = true;
    this.clearError();
    this.setStatus(`Checking ${label}…`);
    try {
      await work();
      this.setStatus(`Done in ${Math.round(this.lastTiming.ms)} ms (${this.loaded.backend === 'webgpu' ? 'WebGPU' : 'CPU'}).`);
    } catch (e) {
      this.setStatus('That photo could not be checked.');
      this.showError('input', explain(e));
    } finally {
      this.busy = false;
    }
  }

  showResult(r, previewBlob, ms) {
    const section = this.$('.result');
    const { model } = this.loaded;
    const names = new Map(model.tree.map((n) => [n.id, n.name]));
    const ranked = [...r.classes].sort((a, b) => b.probability - a.probability);
    const high = r.high_risk;
    const unsure = ranked[0].probability < 0.5;
    const preview = el('img', { alt: `The photo checked: ${r.path}` });
    if (previewBlob) {
      preview.src = URL.createObjectURL(previewBlob);
      preview.addEventListener('load', () => URL.revokeObjectURL(preview.src), { once: true });
    }
    const headline = high
      ? `Higher risk: ${pct(r.malignant)} chance this is malignant.`
      : `Lower risk: ${pct(r.malignant)} chance this is malignant.`;
    const advice = high
      ? 'See a dermatologist soon and show them this spot.'
      : 'This does not rule out skin cancer. If the spot is new, changing, bleeding or worrying you, see a dermatologist.';
    const top = el('ol', { class: 'top' },
      ...ranked.slice(0, 3).map((c) => el('li', {},
        el('span', { text: `${c.name} ` }), el('span', { class: 'pct', text: pct(c.probability) }), bar(c.probability))));
    section.replaceChildren(
      el('div', { class: 'result-head' }, preview,
        el('div', {},
          el('p', { class: `risk ${high ? 'high' : 'low'}`, text: headline }),
          el('p', { class: `advice ${high ? 'high' : ''}`, text: advice }))),
      unsure ? el('p', { class: 'notice', text: `The model is unsure: no diagnosis reaches 50% (the most likely is ${ranked[0].name} at ${pct(ranked[0].probability)}). A clearer, closer photo may help; a dermatologist can tell for sure.` }) : '',
      el('h3', { text: 'Most likely diagnoses' }), top,
      el('details', { class: 'tree' }, el('summary', { text: 'All groups and diagnoses' }), this.tree(r, model, names)),
      el('p', { class: 'meta', text: `${r.path} · model ${model.name} · ${this.loaded.backend === 'webgpu' ? 'WebGPU' : 'CPU'} · ${Math.round(ms)} ms · high risk from ${pct(model.high_risk_threshold)}` }),
    );
    section.hidden = false;
  }

  /** The inference-node tree (benign / malignant, second-level groups) with the diagnoses under them. */
  tree(r, model, names) {
    const prob = new Map([...r.nodes, ...r.classes].map((c) => [c.id, c.probability]));
    const children = new Map();
    const ids = new Set(model.tree.map((n) => n.id));
    const roots = [];
    for (const n of model.tree) {
      if (n.parent && ids.has(n.parent)) {
        if (!children.has(n.parent)) children.set(n.parent, []);
        children.get(n.parent).push(n.id);
      } else {
        roots.push(n.id);
      }
    }
    const list = (nodes) => el('ul', {}, ...nodes
      .sort((a, b) => prob.get(b) - prob.get(a))
      .map((id) => el('li', {},
        el('span', { text: `${names.get(id)} ` }), el('span', { class: 'pct', text: pct(prob.get(id)) }),
        children.has(id) ? list(children.get(id)) : '')));
    return list(roots);
  }

  async startCamera() {
    const notice = this.$('.camera-notice');
    notice.hidden = true;
    if (!navigator.mediaDevices?.getUserMedia) {
      this.cameraProblem('This browser cannot use a camera on this page (it needs a secure https:// address). Choose a photo instead.');
      return;
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: { ideal: 'environment' }, width: { ideal: 1280 }, height: { ideal: 1280 } },
        audio: false,
      });
    } catch (e) {
      const why = {
        NotAllowedError: 'Camera access was denied. Allow it in the browser\'s site settings, or choose a photo instead.',
        SecurityError: 'Camera access is blocked on this page. Choose a photo instead.',
        NotFoundError: 'No camera was found on this device. Choose a photo instead.',
        OverconstrainedError: 'No suitable camera was found on this device. Choose a photo instead.',
        NotReadableError: 'The camera is in use by another app. Close it and try again, or choose a photo instead.',
      }[e.name] ?? `The camera could not be started (${e.message}). Choose a photo instead.`;
      this.cameraProblem(why);
      return;
    }
    const video = this.$('video');
    video.srcObject = this.stream;
    this.$('.camera').hidden = false;
    this.$('.camera-buttons').hidden = false;
    const track = this.stream.getVideoTracks()[0];
    const caps = track.getCapabilities ? track.getCapabilities() : {};
    this.$('.torch').hidden = !caps.torch;
    try { await video.play(); } catch { /* autoplay of a muted inline video is allowed; play() may race with srcObject */ }
    this.$('.capture').focus();
  }

  cameraProblem(message) {
    const notice = this.$('.camera-notice');
    notice.textContent = message;
    notice.hidden = false;
    this.dispatchEvent(new CustomEvent('dermscreen:error', { detail: { kind: 'camera', message }, bubbles: true, composed: true }));
    this.$('.pick').focus();
  }

  stopCamera() {
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
    if (!this.$) return;
    this.$('.camera').hidden = true;
    this.$('.camera-buttons').hidden = true;
    this.$('.torch').setAttribute('aria-pressed', 'false');
  }

  async toggleTorch() {
    const track = this.stream?.getVideoTracks()[0];
    if (!track) return;
    const button = this.$('.torch');
    const on = button.getAttribute('aria-pressed') !== 'true';
    try {
      await track.applyConstraints({ advanced: [{ torch: on }] });
      button.setAttribute('aria-pressed', String(on));
    } catch {
      button.hidden = true;
    }
  }

  /** Classifies the square under the guide in the current camera frame. */
  async capture() {
    const video = this.$('video');
    if (!this.stream || !video.videoWidth || this.busy) return;
    const side = Math.round(Math.min(video.videoWidth, video.videoHeight) * GUIDE_FRACTION);
    const out = Math.min(side, CAPTURE_MAX_SIDE);
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = out;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, (video.videoWidth - side) / 2, (video.videoHeight - side) / 2, side, side, 0, 0, out, out);
    const frame = ctx.getImageData(0, 0, out, out);
    const preview = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.9));
    const name = `camera-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await this.fromUi('the camera photo', async () => {
      const { engine } = await this.ready;
      await this.run(() => engine.classifyRgba(new Uint8Array(frame.data.buffer), out, out, name), preview, name);
    }, (e) => `The camera photo could not be checked: ${e.message}`);
  }
}

if (!customElements.get('derm-screen')) customElements.define('derm-screen', DermScreen);

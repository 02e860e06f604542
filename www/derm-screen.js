// <derm-screen>: the dermscreen classifier as a custom element.
//
// Attributes
//   model-url   URL of model.json (default: model/model.json beside this script)
//   camera      "off" hides the camera; anything else offers it
//   backend     "auto" (default: the faster of WebGPU and CPU, measured), "webgpu" (the CPU where
//               WebGPU cannot start), "cpu"
//   All three may change at any time: a new model-url or backend loads that model or backend
//   (the last result is cleared, as it came from the one before) and `ready` follows it. What
//   one script sets together, adding the element included, is loaded once. A load that fails
//   shows why with "Try again", which loads again the same way.
// Events (bubbling, composed)
//   dermscreen:result    detail: the CLI's `classify --format json` object for the image: `gate`
//                        ("ok" or why no risk is given, with `gate_message`), `lesion_score`,
//                        `domain` ("dermoscopic" or "clinical": the kind of photo it was taken
//                        for), and only when the gate is "ok", `malignant`, `high_risk` (the
//                        flag, with that kind's threshold), `unsure` (no diagnosis reaches
//                        50%), `classes`, `nodes`
//   dermscreen:saliency  detail: { class, name, probability, size, ms } once a map is shown
//   dermscreen:error     detail: { kind: "input" | "camera" | "model" | "engine", message }
// Methods and properties
//   DermScreen.isSupported()  whether this browser can run the classifier at all
//   el.ready                  promise of { backend, backendReason, fallbackReason, model, loadMs, warmUpMs }
//                             for the model and backend the attributes name now
//   el.classify(blob, name)   classifies an image file; resolves to the result object
//   el.showSaliency()         shows where the model looked on the last photo (what the result's
//                             toggle does); resolves to the engine's saliency object
//   el.setContext(fields)     judges the next photos with optional patient context (age, sex,
//                             site, grew, changed, bled, itched, hurt, elevated); resolves to
//                             the fields used, rejects naming a field whose value it refuses.
//                             The page's form does the same; results carry `context_used`.
//                             Changed answers offer to check the photo shown again (a second
//                             dermscreen:result for the same image).
//   el.context                the context in use
//   el.lastTiming             { ms, backend } of the last classification
// Photos come from the file picker, a drop, a paste with the focus in the element (a host
// passes on other pastes by re-dispatching them on it), or the camera.
//
// Everything runs in this browser: no image leaves the device. The engine (engine.js), the
// result view (result-view.js), the context form (context-form.js), the camera (camera.js) and
// the style sheet (derm-screen-style.js) are separate modules; this file is the element around
// them.

import { followBackend, guarded, hasCrashed, isSupported, loadEngine, mb, progressText } from './engine.js';
import { backendLabel, el, resultView, riskText, saliencyView } from './result-view.js';
import { contextForm } from './context-form.js';
import { firstPicture, guideSquare, hasTorch, openCamera, setTorch, stopTracks } from './camera.js';
import { styleSheet } from './derm-screen-style.js';

const DEFAULT_MODEL = new URL('./model/model.json', import.meta.url);
// Files are refused above this many bytes before they are read (in MB as the page writes MB:
// 1e6 bytes, so that "under 60 MB" is what it says).
const MAX_FILE_BYTES = 60e6;
// Where age and sex are kept when the person asks to remember them (nothing else is stored).
const REMEMBERED = 'dermscreen:context';

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
  <div>Drop or paste a photo of the skin spot here, or</div>
  <div class="buttons">
    <button type="button" class="pick">Choose a photo</button>
    <button type="button" class="secondary start-camera">Use the camera</button>
  </div>
  <input type="file" accept="image/*" hidden>
</div>
<div class="context-slot"></div>
<div class="notice camera-notice" role="alert" hidden></div>
<div class="status" role="status"><span class="status-text">Loading the classifier…</span>
  <progress class="progress" max="1" hidden></progress></div>
<div class="error" role="alert" hidden></div>
<p class="answer-said" role="status"></p>
<section class="result" aria-label="The answer" tabindex="-1" hidden></section>
<p class="disclaimer">A screening aid, not a diagnosis. It was trained mostly on dermatoscope
images of pigmented spots and some phone photos, and can be wrong, more so for phone photos. If a
spot is new, changing, bleeding or worrying you, see a dermatologist whatever this says.</p>
`;

/**
 * Resolves once the browser has drawn what was just changed on the page (a frame's callbacks
 * run before it is drawn; a task queued from them runs after): at once in a hidden tab, which
 * draws nothing, and after 1 s at most where frames are withheld (a host's offscreen frame). A
 * busy device can take a while to draw its next frame: over 100 ms in a test run right after a
 * 50 megapixel photo, over 300 ms in a CI run right after the WebGPU tests, and the status was
 * then not seen before the step that holds the page.
 */
const afterPaint = () => new Promise((resolve) => {
  if (document.hidden) { resolve(); return; }
  const timer = setTimeout(resolve, 1000);
  requestAnimationFrame(() => setTimeout(() => { clearTimeout(timer); resolve(); }));
});

/** Whether two sets of answers say the same: a field not given ('' or missing) counts as absent. */
function sameAnswers(a, b) {
  const given = (c) => JSON.stringify(Object.entries(c).filter(([, v]) => v !== '' && v != null).sort());
  return given(a) === given(b);
}

export class DermScreen extends HTMLElement {
  static get observedAttributes() { return ['camera', 'model-url', 'backend']; }

  /** Whether this browser can run the classifier: WebAssembly with SIMD and ES modules. */
  static isSupported() { return isSupported(); }

  #root;
  #ready;
  // Settle `#ready`; null once it has settled, so a later load makes a new promise.
  #resolveReady = null;
  #rejectReady = null;
  // Bumped by every load: a load that a newer model-url or backend replaced shows nothing.
  #loadRequest = 0;
  #loadQueued = false;
  // What the last load gave, while it is the one the attributes name (null while one is pending).
  #loaded = null;
  // Why the last load failed, until the next: a photo that waited for it is not blamed.
  #loadError = null;
  #lastTiming = null;
  // The backend the status line last named: where the engine has since left WebGPU, the next
  // "Done" says why.
  #backendNamed = null;
  #stream = null;
  // Bumped by every start and stop of the camera: a camera granted to a request that is no
  // longer the latest (a second tap, or a stop during the permission prompt) is turned off.
  #cameraRequest = 0;
  // While a check runs, what it checks (for the status line; null when none runs), and the
  // check asked for next.
  #checking = null;
  #next = null;
  #started = false;
  // The sentence for screen readers waiting to be set (#say).
  #sayTimer = 0;
  // The patient context the next photos are judged with (strings; '' = not given), and its form.
  #context = {};
  #form = null;
  // The photo whose result is shown, while it has a risk (null for a gated one): `context`, the
  // answers it was judged with, and `again(context)` to check it with answers given since (or
  // they would apply only to the next photo, and the person would have to choose this one
  // again); `computeMap()`, a promise of its saliency map, and `map` once computed.
  #shown = null;

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: 'open' });
    this.#root.adoptedStyleSheets = [styleSheet()];
    const tpl = document.createElement('template');
    tpl.innerHTML = TEMPLATE;
    this.#root.append(tpl.content.cloneNode(true));
    // Buttons are made unavailable with aria-disabled, not disabled, which would take the
    // keyboard's focus off them (Chromium moves it to the page); a click on one does nothing.
    this.#root.addEventListener('click', (e) => {
      if (e.target.closest('[aria-disabled=true]')) e.stopImmediatePropagation();
    }, { capture: true });
    this.#newReady();
  }

  /**
   * Resolves when the model is loaded: { backend, backendReason (why this backend, for "auto"),
   * fallbackReason (why not WebGPU, when on the CPU), model, loadMs, warmUpMs }. After the
   * model-url or backend attribute changes, or "Try again" under a failed load, the promise read
   * from then on is the new load's (one read while a load was still under way follows to the
   * newest).
   */
  get ready() { return this.#ready; }

  #newReady() {
    this.#ready = new Promise((resolve, reject) => { this.#resolveReady = resolve; this.#rejectReady = reject; });
    this.#ready.catch(() => {});
  }

  #settleReady(settle, value) {
    settle(value);
    this.#resolveReady = this.#rejectReady = null;
  }

  /** The patient context the next photos are judged with, as `setContext` took it. */
  get context() { return { ...this.#context }; }

  /**
   * Judges the next photos with this optional patient context: any of `age`, `sex`
   * ('female' | 'male'), `site` (one of `ready.model.context_sites`), and `grew`, `changed`,
   * `bled`, `itched`, `hurt`, `elevated` (true | false); missing, null or '' = not given.
   * Resolves to the fields used; rejects, naming the field, on a value it does not accept (the
   * context is then unchanged). `setContext({})` goes back to the photo alone.
   */
  async setContext(fields = {}) {
    const { engine } = await this.#ready;
    const strings = Object.fromEntries(Object.entries(fields).filter(([, v]) => v != null).map(([k, v]) => [k, String(v)]));
    const used = engine.checkContext(strings);
    this.#context = strings;
    this.#form?.set(strings);
    this.#offerRecheck();
    return used;
  }

  /** `{ ms, backend }` of the last classification, or null. */
  get lastTiming() { return this.#lastTiming; }

  connectedCallback() {
    if (this.#started) return;
    this.#started = true;
    const fileInput = this.#$('input[type=file]');
    this.#$('.pick').addEventListener('click', () => fileInput.click());
    fileInput.addEventListener('change', (e) => {
      const file = e.target.files?.[0];
      e.target.value = '';
      if (file) this.#classifyFromUi(file, file.name);
    });
    const drop = this.#$('.drop');
    drop.addEventListener('keydown', (e) => {
      if ((e.key === 'Enter' || e.key === ' ') && e.target === drop) {
        e.preventDefault();
        this.#$('.pick').click(); // as "Choose a photo" does: nothing while a model loads
      }
    });
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      this.#checkFirst(e.dataTransfer?.files, ['dropped', 'drop'],
        'That was not a file (a photo dragged from a web page arrives as its address). Save the photo, then drop or choose the file.');
    });
    // Ctrl+V or Cmd+V with the focus in the element: a screenshot, or a photo copied from a
    // record or an e-mail. (Events from the shadow tree reach the host: paste is composed.)
    this.addEventListener('paste', (e) => this.#paste(e));
    this.#$('.start-camera').addEventListener('click', () => this.#startCamera());
    this.#$('.stop-camera').addEventListener('click', () => {
      this.#stopCamera();
      this.#$('.start-camera').focus(); // "Close camera" is gone with the camera
    });
    this.#$('.capture').addEventListener('click', () => this.#capture());
    this.#$('.torch').addEventListener('click', () => this.#toggleTorch());
    this.#applyCameraAttribute();
    this.#queueLoad();
  }

  disconnectedCallback() { this.#stopCamera(); }

  /**
   * Checks the first of the files dropped or pasted (`[did, verb]`: ['dropped', 'drop'] or
   * ['pasted', 'paste'], for the status line), or says `noFile` when none came.
   */
  #checkFirst(files = [], [did, verb], noFile) {
    const [file] = files;
    if (!file) { this.#showError('input', noFile); return; }
    // One result is shown at a time: of several photos the first is checked, and the
    // status line says so rather than leave the others silently unchecked.
    const note = files.length > 1 ? `${file.name}, the first of ${files.length} photos ${did}: ${verb} one at a time.` : '';
    this.#classifyFromUi(file, file.name, note);
  }

  #paste(e) {
    const files = e.clipboardData?.files ?? [];
    const target = e.composedPath()[0];
    // Text pasted into a field (the context form's age) is the field's; an empty clipboard is nothing.
    const intoField = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target?.isContentEditable;
    if (!files.length && (intoField || !e.clipboardData?.types.length)) return;
    e.preventDefault();
    this.#checkFirst(files, ['pasted', 'paste'],
      'That was text, not a photo. Copy the photo itself (right-click it and choose Copy image) and paste again, or save it and choose the file.');
  }

  attributeChangedCallback(name, previous, value) {
    // Before the element is on a page its attributes are read when it arrives.
    if (!this.#started || previous === value) return;
    if (name === 'camera') this.#applyCameraAttribute();
    else this.#queueLoad();
  }

  /**
   * Loads once the running script has set what it sets: a framework that adds the element and
   * then sets its model-url and backend, or a host changing both, causes one load, not three.
   */
  #queueLoad() {
    if (!this.#resolveReady) this.#newReady(); // `ready` read from now on is this load's
    this.#loaded = null;
    this.#loadError = null;
    if (this.#loadQueued) return;
    this.#loadQueued = true;
    queueMicrotask(() => { this.#loadQueued = false; this.#load(); });
  }

  /** Classifies an image file (Blob) and shows the result. Resolves to the CLI's JSON object. */
  async classify(blob, name = blob?.name || 'photo') {
    if (!(blob instanceof Blob)) {
      throw new TypeError('classify() takes a File or Blob of a photo (JPEG, PNG or WebP): a file input\'s file, or the blob() of a fetch() response.');
    }
    // The context when the photo is sent, not when the engine gets to it; the engine is shared
    // by every element on the page, so each call carries its element's own context.
    const context = this.#context;
    if (blob.size > MAX_FILE_BYTES) {
      throw new Error(`The file is ${mb(blob.size)} MB; choose a photo under ${MAX_FILE_BYTES / 1e6} MB.`);
    }
    const bytes = new Uint8Array(await blob.arrayBuffer());
    return this.#run((engine, c) => engine.classifyFile(bytes, name, c), context, blob, (engine) => engine.saliencyFile(bytes));
  }

  /**
   * Shows where the model looked on the last photo checked (computed once, on this device) and
   * resolves to the engine's saliency object. Rejects when no photo has been checked or the
   * last one was gated.
   */
  async showSaliency() {
    if (!this.#shown) throw new Error('Check a photo of a skin spot first: there is no map for a photo that got no risk.');
    const section = this.#$('.result');
    const toggle = section.querySelector('.saliency-toggle');
    let figure = section.querySelector('figure.saliency');
    let s = this.#shown.map;
    if (!figure) {
      const pending = this.#shown;
      toggle.setAttribute('aria-disabled', 'true'); // the person pressed Enter on it: it keeps the focus
      toggle.textContent = 'Finding where the model looked…';
      try {
        await afterPaint(); // the map holds the thread for about 0.5 s on the CPU path: say so first
        s = pending.map ?? (pending.map = await guarded(pending.computeMap()));
      } finally {
        toggle.removeAttribute('aria-disabled');
      }
      if (pending !== this.#shown) return s; // a newer photo replaced the result meanwhile
      figure = saliencyView(s);
      figure.id = 'saliency-figure';
      toggle.after(figure);
      // Named only now: an aria-controls pointing at no element is invalid ARIA.
      toggle.setAttribute('aria-controls', figure.id);
      this.#emit('saliency', { class: s.class, name: s.name, probability: s.probability, size: s.size, ms: s.ms });
    }
    figure.hidden = false;
    toggle.setAttribute('aria-pressed', 'true');
    toggle.textContent = 'Hide where the model looked';
    return s;
  }

  #hideSaliency() {
    const section = this.#$('.result');
    section.querySelector('figure.saliency').hidden = true;
    const toggle = section.querySelector('.saliency-toggle');
    toggle.setAttribute('aria-pressed', 'false');
    toggle.textContent = 'Show where the model looked';
  }

  /** The offer to check the photo shown again, with answers given since: hidden until then. */
  #recheckOffer() {
    const button = el('button', { type: 'button', class: 'secondary', text: 'Check this photo again with your answers' });
    button.addEventListener('click', async () => {
      const photo = this.#shown;
      if (!photo) return;
      await this.#fromUi('the photo again with your answers', () => photo.again(this.#context),
        (e) => `The photo could not be checked again: ${e.message}`);
      // The button went with the result it was in: the focus goes to the new answer, not the page.
      if (!this.#root.activeElement) this.#$('.result').focus({ preventScroll: true });
    });
    return el('p', { class: 'recheck', hidden: '' }, 'Your answers changed since this photo was checked. ', button);
  }

  /** Shows the offer while the answers differ from those the photo shown was judged with. */
  #offerRecheck() {
    const offer = this.#$('.result .recheck');
    if (offer) offer.hidden = !this.#shown || sameAnswers(this.#shown.context, this.#context);
  }

  #saliencyToggle() {
    const toggle = el('button', {
      type: 'button', class: 'secondary saliency-toggle', text: 'Show where the model looked',
      'aria-pressed': 'false',
    });
    toggle.addEventListener('click', () => {
      if (toggle.getAttribute('aria-pressed') === 'true') { this.#hideSaliency(); return; }
      this.showSaliency().catch((e) => {
        toggle.textContent = 'Show where the model looked';
        this.#showError('engine', `Could not show where the model looked: ${e.message}`);
      });
    });
    return toggle;
  }

  #$(selector) { return this.#root.querySelector(selector); }

  /** The one way this element fires its events: bubbling and composed, so hosts see them. */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(`dermscreen:${type}`, { detail, bubbles: true, composed: true }));
  }

  #applyCameraAttribute() {
    if (this.getAttribute('camera') === 'off') this.#stopCamera();
    this.#offerCamera();
  }

  /** "Use the camera" is offered while the camera is allowed and not already open. */
  #offerCamera() {
    this.#$('.start-camera').hidden = this.getAttribute('camera') === 'off' || this.#stream !== null;
  }

  /**
   * Loads the model and backend the attributes name. A second load (a new model-url or backend)
   * starts from a clean slate: no result, map, error or context form of the model before.
   */
  async #load() {
    const request = ++this.#loadRequest;
    this.#setInputsEnabled(false);
    if (request > 1) this.#clearForNewModel();
    if (!isSupported()) {
      const message = 'This browser cannot run the classifier (it needs WebAssembly with SIMD: a current Chrome, Edge, Firefox or Safari).';
      this.#setStatus('Not available in this browser.');
      this.#showError('engine', message);
      this.#loadError = new Error(message);
      this.#settleReady(this.#rejectReady, this.#loadError);
      return;
    }
    const modelUrl = new URL(this.getAttribute('model-url') || DEFAULT_MODEL, document.baseURI).href;
    const current = () => request === this.#loadRequest;
    const progress = this.#$('.progress');
    try {
      const loaded = await loadEngine(modelUrl, this.getAttribute('backend') || 'auto', (p) => (current() ? this.#showProgress(p) : undefined));
      if (!current()) return;
      progress.hidden = true;
      const where = loaded.backend === 'webgpu' ? 'on the graphics chip (WebGPU)' : 'on the processor (CPU)';
      const why = loaded.backendReason ? ` (${loaded.backendReason})` : '';
      this.#setStatus(`Ready. Runs ${where}${why}, on this device only.`);
      this.#backendNamed = loaded.backend;
      this.#setInputsEnabled(true);
      this.#loaded = loaded;
      this.#settleReady(this.#resolveReady, loaded);
      this.#showContextForm(loaded.model);
    } catch (e) {
      if (!current()) return;
      progress.hidden = true;
      this.#setStatus('The classifier could not be loaded.');
      this.#showError('model', e.message);
      this.#offerLoadAgain();
      this.#loadError = e;
      this.#settleReady(this.#rejectReady, e);
    }
  }

  /**
   * "Try again" under a load's error, unless the engine crashed (its message says to reload).
   * A dropped connection is the usual cause, and reloading instead would also lose what the
   * host page around the element holds (a half-filled form).
   */
  #offerLoadAgain() {
    if (hasCrashed()) return;
    const again = el('button', { type: 'button', class: 'secondary', text: 'Try again' });
    again.addEventListener('click', () => {
      this.#queueLoad();
      this.#$('.pick').focus(); // the button goes with the error; the photo picker is next
    });
    this.#$('.error').append(again);
  }

  /** What the model before a new model-url or backend showed, taken away. */
  #clearForNewModel() {
    this.#shown = null;
    this.#form = null;
    this.#$('.context-slot').replaceChildren();
    this.#$('.result').replaceChildren();
    this.#$('.result').hidden = true;
    clearTimeout(this.#sayTimer);
    this.#$('.answer-said').textContent = ''; // read when browsing, it would speak of a result gone
    this.#$('.error').hidden = true;
    this.#setStatus('Loading the classifier…');
  }

  /**
   * Takes the form's answers for the next photos and resolves to those kept. One the model
   * refuses (an age of 450) is left out and marked in the form, where it stays until changed:
   * the photo is not judged with the answer before it while the form shows the new one.
   */
  async #takeAnswers(values) {
    const { engine } = await this.#ready;
    const refused = Object.keys(values).filter((f) => {
      try { engine.checkContext({ [f]: values[f] }); return false; } catch { return true; }
    });
    this.#context = Object.fromEntries(Object.entries(values).filter(([f]) => !refused.includes(f)));
    this.#form?.markRefused(refused);
    if (refused.length) this.#emit('error', { kind: 'input', message: `Answers not used: ${refused.join(', ')}` });
    this.#offerRecheck();
    return this.#context;
  }

  /** The optional context form, when the model uses context; age and sex come back if remembered. */
  #showContextForm(model) {
    if (!model.context_fields?.length) { this.#context = {}; return; }
    this.#form = contextForm(model, (values, remember) => this.#takeAnswers(values).then((kept) => {
      try {
        if (remember) localStorage.setItem(REMEMBERED, JSON.stringify({ age: kept.age, sex: kept.sex }));
        else localStorage.removeItem(REMEMBERED);
      } catch { /* storage blocked: nothing is remembered */ }
    }, (e) => this.#showError('input', e.message)));
    this.#$('.context-slot').replaceChildren(this.#form.element);
    let remembered = null;
    try { remembered = JSON.parse(localStorage.getItem(REMEMBERED) ?? 'null'); } catch { remembered = null; }
    if (remembered) this.#form.remember(true);
    // The context in use (kept from the model before a new model-url) and what was remembered,
    // as this model reads them: what it refuses is dropped, not sent with every photo.
    const wanted = { ...this.#context, ...remembered };
    if (Object.keys(wanted).length) {
      this.setContext(wanted).catch(() => {
        this.#context = {};
        try { if (remembered) localStorage.removeItem(REMEMBERED); } catch { /* storage blocked */ }
      });
    }
  }

  /**
   * Shows a load's progress. Before the steps that hold the page's thread (starting, the
   * warm-up, the measurement) it resolves once the status is drawn, which the load waits for.
   */
  #showProgress(p) {
    const progress = this.#$('.progress');
    if (p.phase === 'download') {
      progress.hidden = false;
      progress.value = p.total ? p.received / p.total : 0;
      this.#setStatus(`Downloading the model: ${progressText(p.received, p.total)}…`);
      return undefined;
    }
    const step = {
      device: 'Starting the classifier…',
      warmup: 'Preparing the classifier…',
      measure: 'Measuring whether the graphics chip or the processor is faster here…',
    }[p.phase];
    if (!step) return undefined; // ('engine': the module loads, nothing to say yet)
    if (p.phase === 'warmup') progress.hidden = true;
    this.#setStatus(step);
    return afterPaint();
  }

  #setStatus(text) { this.#$('.status-text').textContent = text; }

  #setInputsEnabled(on) {
    for (const b of this.#root.querySelectorAll('.pick, .start-camera, .capture')) {
      if (on) b.removeAttribute('aria-disabled');
      else b.setAttribute('aria-disabled', 'true');
    }
  }

  #showError(kind, message) {
    const box = this.#$('.error');
    box.textContent = message;
    box.hidden = false;
    this.#emit('error', { kind, message });
  }

  /**
   * Classifies with `call(engine, context)` on the model the attributes name, shows the result,
   * and offers its saliency map (`saliency(engine)`). A photo whose model changed while it was
   * checked is checked again with the new one: the page shows no result of a model it left.
   */
  async #run(call, context, previewBlob, saliency) {
    let loaded, result, ms;
    do {
      loaded = await this.#ready;
      const t0 = performance.now();
      result = await guarded(call(loaded.engine, context));
      ms = performance.now() - t0;
    } while (loaded !== this.#loaded);
    followBackend(loaded);
    const { engine, backend, model } = loaded;
    this.#lastTiming = { ms, backend };
    // A map explains a diagnosis, and the answers move a risk; a gated photo has neither.
    this.#shown = result.gate === 'ok'
      ? { context, again: (c) => this.#run(call, c, previewBlob, saliency), computeMap: () => saliency(engine), map: null } : null;
    const section = this.#$('.result');
    const [head, ...rest] = resultView(result, model, { previewBlob, backend, ms });
    // The offer only where the model reads answers: `setContext` takes them for any model.
    const offer = this.#shown && model.context_fields?.length ? [this.#recheckOffer()] : [];
    section.replaceChildren(head, ...offer, ...(this.#shown ? [this.#saliencyToggle()] : []), ...rest);
    section.hidden = false;
    this.#offerRecheck();
    this.#say(result);
    this.#emit('result', result);
    return result;
  }

  /**
   * Tells screen readers the answer to a photo in a sentence: the risk and what to do, or why
   * none is given. The result section is not a live region, as it would be read whole (some 150
   * words), and again when the map is shown. The text is cleared and set a moment later so that
   * the same words for the next photo ("Lower risk: 2% ...") are said again.
   */
  #say(result) {
    const said = this.#$('.answer-said');
    const { headline, advice } = riskText(result);
    said.textContent = '';
    clearTimeout(this.#sayTimer);
    this.#sayTimer = setTimeout(() => { said.textContent = `${headline} ${advice}`; }, 150);
  }

  #classifyFromUi(blob, name, note = '') {
    return this.#fromUi(name, () => this.classify(blob, name),
      (e) => `${name}: ${e.message.replace(/\.$/, '')}. Try a different photo: a sharp JPEG, PNG or WebP.`, note);
  }

  /**
   * Runs one check started from the page: one at a time, with its status and any error shown;
   * `note` is added to the status line when it is done. One asked for during a check runs after
   * it (the latest only): ignored, it would leave the answer before on screen, to be read as
   * this photo's.
   */
  async #fromUi(label, work, explain, note = '') {
    if (this.#checking !== null) {
      this.#next = () => this.#fromUi(label, work, explain, note);
      this.#setStatus(`Checking ${this.#checking}, then ${label}…`);
      return;
    }
    this.#checking = label;
    this.#$('.error').hidden = true;
    this.#setStatus(`Checking ${label}…`);
    try {
      // Decoding a big photo holds the page's thread (seconds on a phone): "Checking" is drawn
      // first, or the page would look as if the tap did nothing.
      await afterPaint();
      await work();
      const { ms, backend } = this.#lastTiming;
      const moved = backend !== this.#backendNamed && this.#loaded?.backendReason ? ` ${this.#loaded.backendReason}.` : '';
      this.#backendNamed = backend;
      this.#setStatus(`Done in ${Math.round(ms)} ms (${backendLabel(backend)}).${moved}${note ? ` Checked ${note}` : ''}`);
      this.#reveal(this.#$('.result').firstElementChild);
    } catch (e) {
      if (e === this.#loadError) {
        // A photo dropped or pasted during the load waited for it: the load's error (with its
        // "Try again") is what to read, not advice to try another photo.
        this.#setStatus(`The classifier could not be loaded, so ${label} was not checked.`);
      } else if (hasCrashed()) {
        // Only a reload brings the engine back: advice to try another photo would send the
        // person round in circles.
        this.#setStatus(`The classifier stopped working, so ${label} was not checked.`);
        this.#showError('engine', e.message);
      } else {
        this.#setStatus('That photo could not be checked.');
        this.#showError('input', explain(e));
      }
      this.#reveal(this.#$('.error'));
    } finally {
      this.#checking = null;
      const next = this.#next;
      this.#next = null;
      next?.();
    }
  }

  /**
   * Scrolls the answer to a check the person started into view: on a phone the camera preview
   * or the picker fills the screen, and the answer would appear below it, unseen.
   */
  #reveal(element) {
    const still = matchMedia('(prefers-reduced-motion: reduce)').matches;
    element?.scrollIntoView({ block: 'nearest', behavior: still ? 'auto' : 'smooth' });
  }

  async #startCamera() {
    this.#$('.camera-notice').hidden = true;
    const request = ++this.#cameraRequest;
    let stream;
    try {
      stream = await openCamera();
    } catch (e) {
      if (request === this.#cameraRequest) this.#cameraProblem(e.message);
      return;
    }
    if (request !== this.#cameraRequest) {
      stopTracks(stream);
      return;
    }
    if (this.#stream) stopTracks(this.#stream); // one already running: this one replaces it
    this.#stream = stream;
    this.#offerCamera();
    const video = this.#$('video');
    video.srcObject = this.#stream;
    this.#$('.camera').hidden = false;
    this.#$('.camera-buttons').hidden = false;
    const track = this.#stream.getVideoTracks()[0];
    track.addEventListener('ended', () => { if (this.#stream === stream) this.#cameraEnded(); }, { once: true });
    this.#$('.torch').hidden = !hasTorch(track);
    try { await video.play(); } catch { /* autoplay of a muted inline video is allowed; play() may race with srcObject */ }
    this.#showCamera();
  }

  /**
   * Brings the whole preview and its buttons into view, the buttons first so that where both fit
   * (the preview is sized for that) the second call leaves them on screen, and puts the focus on
   * "Take photo". Focusing it alone would scroll to the button and could leave the square half
   * above the screen.
   */
  #showCamera() {
    this.#$('.camera-buttons').scrollIntoView({ block: 'nearest' });
    this.#$('.camera').scrollIntoView({ block: 'nearest' });
    this.#$('.capture').focus({ preventScroll: true });
  }

  /**
   * The browser ended the camera (the page went to the background, another app took it): its
   * preview would freeze or go black, and a capture would be judged "too dark".
   */
  #cameraEnded() {
    this.#stopCamera();
    this.#cameraProblem('The camera stopped (the page went to the background, or another app took the camera). Tap "Use the camera" to start it again, or choose a photo.');
  }

  #cameraProblem(message) {
    const notice = this.#$('.camera-notice');
    notice.textContent = message;
    notice.hidden = false;
    this.#emit('error', { kind: 'camera', message });
    this.#$('.pick').focus();
  }

  #stopCamera() {
    this.#cameraRequest++;
    if (this.#stream) stopTracks(this.#stream);
    this.#stream = null;
    this.#$('video').srcObject = null; // no last frame kept, nor read as the next camera's size
    this.#$('.camera').hidden = true;
    this.#$('.camera-buttons').hidden = true;
    this.#$('.torch').setAttribute('aria-pressed', 'false');
    this.#offerCamera();
  }

  async #toggleTorch() {
    const track = this.#stream?.getVideoTracks()[0];
    if (!track) return;
    const button = this.#$('.torch');
    const on = button.getAttribute('aria-pressed') !== 'true';
    try {
      await setTorch(track, on);
      button.setAttribute('aria-pressed', String(on));
    } catch {
      button.hidden = true;
    }
  }

  /**
   * Classifies the square under the guide in the current camera frame; tapped before the camera's
   * first picture, in the first one. A tap during a check is ignored: the frame aimed at is
   * being checked, and a double tap would check two alike.
   */
  async #capture() {
    const video = this.#$('video');
    const stream = this.#stream;
    if (!stream || this.#checking !== null) return;
    if (stream.getVideoTracks()[0]?.readyState !== 'live') {
      this.#cameraEnded();
      return;
    }
    const name = `camera-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    const context = this.#context;
    await this.#fromUi('the camera photo', async () => {
      if (!(await firstPicture(video))) {
        throw new Error(this.#stream !== stream ? 'the camera was closed before its first picture.'
          : 'the camera has sent no picture. Tap "Close camera", then "Use the camera" to start it again, or choose a photo.');
      }
      const { rgba, side, preview } = guideSquare(video);
      await this.#run((engine, c) => engine.classifyRgba(rgba, side, side, name, c), context, preview, (engine) => engine.saliencyRgba(rgba, side, side));
    }, (e) => `The camera photo could not be checked: ${e.message}`);
  }
}

if (!customElements.get('derm-screen')) customElements.define('derm-screen', DermScreen);

// The result view: DOM built from a classification result and the model's description, with no
// state of its own. <derm-screen> places what these return.

/** A probability as the page shows it: whole percent, one decimal near 0 and 100. */
export const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.005 ? 1 : 0)}%`;

/** document.createElement with `class`, `text` and attributes, and children appended. */
export function el(tag, props = {}, ...children) {
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

/** How the page names a backend. */
export const backendLabel = (backend) => (backend === 'webgpu' ? 'WebGPU' : 'CPU');

/** How the page names the kind of photo the model took a photo for. */
export function kindWords(domain, article = false) {
  const words = domain === 'clinical' ? 'plain camera (phone)' : 'dermoscopic (through a dermatoscope)';
  return article ? `a ${words} photo` : words;
}

/** The risk headline and what to do, in words; for a gated photo, what went wrong instead. */
export function riskText(r) {
  if (r.gate !== 'ok') return { headline: 'No risk given for this photo.', advice: r.gate_message };
  return r.high_risk
    ? { headline: `Higher risk: ${pct(r.malignant)} chance this is malignant.`,
      advice: 'See a dermatologist soon and show them this spot.' }
    : { headline: `Lower risk: ${pct(r.malignant)} chance this is malignant.`,
      advice: 'This does not rule out skin cancer. If the spot is new, changing, bleeding or worrying you, see a dermatologist.' };
}

/** The inference-node tree (benign / malignant, second-level groups) with the diagnoses under them. */
function tree(r, model) {
  const names = new Map(model.tree.map((n) => [n.id, n.name]));
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

/**
 * The children of the result section for result `r` of `model`: the photo (`previewBlob`, may be
 * null), the risk in words, a note when the model is unsure, the top three diagnoses, the
 * tree, and how it was computed (`backend`, `ms`).
 */
export function resultView(r, model, { previewBlob, backend, ms }) {
  const { headline, advice } = riskText(r);
  const preview = el('img', { alt: `The photo checked: ${r.path}` });
  if (previewBlob) {
    preview.src = URL.createObjectURL(previewBlob);
    preview.addEventListener('load', () => URL.revokeObjectURL(preview.src), { once: true });
  }
  // When, for a result kept as a screenshot or printed to show a doctor.
  const when = new Date().toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  const meta = el('p', { class: 'meta', text: `${r.path} · checked ${when} · model ${model.name} · ${backendLabel(backend)} · ${Math.round(ms)} ms` });
  if (r.gate !== 'ok') {
    // Nothing that reads as a risk or as reassurance: what went wrong and what to do.
    return [
      el('div', { class: 'result-head' }, preview,
        el('div', {},
          el('p', { class: 'risk gated', text: headline }),
          el('p', { class: 'advice', text: advice }))),
      meta,
    ];
  }
  const ranked = [...r.classes].sort((a, b) => b.probability - a.probability);
  const high = r.high_risk;
  const threshold = model.high_risk_thresholds?.[r.domain] ?? model.high_risk_threshold;
  const population = model.population
    ? el('p', { class: 'population', text: `Percentages are for ${model.population}. For ${r.domain ? kindWords(r.domain) : 'such'} photos the flag is raised from ${pct(threshold)}, where it catches about 9 in 10 cancers among those spots.` })
    : '';
  const kind = r.domain
    ? el('p', { class: 'kind', text: `Taken for ${kindWords(r.domain, true)}. ${r.domain === 'clinical'
      ? 'The model is less sure on plain camera photos than on photos through a dermatoscope.'
      : 'If this was a plain phone photo, the risk shown may be less reliable.'}` })
    : '';
  const top = el('ol', { class: 'top' },
    ...ranked.slice(0, 3).map((c) => el('li', {},
      el('span', { text: `${c.name} ` }), el('span', { class: 'pct', text: pct(c.probability) }), bar(c.probability))));
  // `r.unsure` is decided in Rust (classifier::UNSURE_BELOW, `model.unsure_below`), as for the CLI.
  const unsure = r.unsure
    ? el('p', { class: 'notice', text: `The model is unsure: no diagnosis reaches ${pct(model.unsure_below)} (the most likely is ${ranked[0].name} at ${pct(ranked[0].probability)}). A clearer, closer photo may help; a dermatologist can tell for sure.` })
    : '';
  return [
    el('div', { class: 'result-head' }, preview,
      el('div', {},
        el('p', { class: `risk ${high ? 'high' : 'low'}`, text: headline }),
        el('p', { class: `advice ${high ? 'high' : ''}`, text: advice }))),
    kind,
    r.context_used?.length
      ? el('p', { class: 'context-used', text: `Your answers used: ${r.context_used.join(', ')}. Without them the estimate would use the photo alone.` })
      : '',
    population,
    unsure,
    // h2: under a page's h1 (this app's, a host's title); h3 there skipped a level for screen readers.
    el('h2', { text: 'Most likely diagnoses' }), top,
    el('details', { class: 'tree' }, el('summary', { text: 'All groups and diagnoses' }), tree(r, model)),
    meta,
  ];
}

/**
 * The saliency figure for map `s` (engine.saliencyFile's result): the photo's centre square
 * with the map over it, a legend for the colour ramp, and what it shows in words.
 */
export function saliencyView(s) {
  const side = s.overlaySide;
  const canvas = el('canvas', { width: side, height: side, role: 'img',
    'aria-label': `The photo with the areas that drove the answer "${s.name}" highlighted` });
  canvas.getContext('2d').putImageData(new ImageData(s.overlay, side, side), 0, 0);
  const ramp = el('span', { class: 'ramp', 'aria-hidden': 'true' });
  ramp.style.background = `linear-gradient(to right, ${s.ramp.join(', ')})`;
  return el('figure', { class: 'saliency' }, canvas,
    el('div', { class: 'legend' }, ramp,
      el('span', { class: 'legend-ends' }, el('span', { text: 'little effect' }), el('span', { text: 'most effect' }))),
    el('figcaption', { text: `Where the model looked for signs of "${s.name}", the diagnosis it leans to: brighter, warmer areas are those that, hidden, weakened that signal most. Check that they lie on the spot, not on hair, a ruler or the edge of the photo.` }));
}

// The <derm-screen> element's style sheet: its colours in light and dark, and the layout of its
// parts (the camera's square, the drop zone, the result, the map, the tree, the context form).
// A constructed stylesheet, not a <style> element, so host pages with a strict CSP (no
// 'unsafe-inline' styles) still style the element.

import { GUIDE_FRACTION } from './camera.js';

// The element's colours: [light, dark]. It takes the colour scheme the page around it names
// (`color-scheme`; the app page names `light dark`, so it follows the phone's setting) and a page
// that names none gets the light one. It paints its own background, so that its text stands out
// on any page, a dark one included. Browsers without light-dark() (before 2024) get the light one.
const PALETTE = {
  text: ['#1a1a1a', '#e6e9ee'],
  surface: ['#fff', '#15181c'],
  muted: ['#3d4a5c', '#aab4c1'],
  // The accent is the host's brand colour, under white text on buttons; as text or a bar on the
  // dark background it would be too dark to read, so there it gives way to a second, light one.
  'accent-text': ['var(--accent)', 'var(--dermscreen-accent-on-dark, #8ab4f0)'],
  line: ['#c9d2dd', '#3a424d'],
  subtle: ['#f6f8fb', '#1e232a'],
  dashed: ['#5b6b7f', '#8593a5'],
  over: ['#e3edf9', '#22324a'],
  track: ['#e3e8ef', '#2f3640'],
  focus: ['#b35900', '#f0a04b'],
  notice: ['#fff4e5', '#3a2a12'],
  error: ['#fdecec', '#3d1a1a'],
  high: ['#a31515', '#ff8a80'],
  low: ['#1b5e20', '#81c784'],
  gated: ['#5c3d00', '#f0b35a'],
};
const palette = (pick) => Object.entries(PALETTE).map(([name, [light, dark]]) => `--ds-${name}: ${pick(light, dark)};`).join('\n  ');

const CSS = `
/* A host restyles the element through its font, its color and background (set both), its
   color-scheme, and --dermscreen-accent (buttons, bars) with --dermscreen-accent-on-dark. */
:host { display: block; font: 1rem/1.5 system-ui, sans-serif; max-width: 40rem; overflow-wrap: anywhere;
  --accent: var(--dermscreen-accent, #1d4f91);
  /* Inner spacing: 1rem, less where large text meets a narrow screen (200% text on 320 px),
     so that the lines keep room for words such as "dermatologist." whole. */
  --ds-gap: min(1rem, 4vw);
  ${palette((light) => light)}
  color: var(--ds-text); background: var(--ds-surface); }
@supports (color: light-dark(#000, #fff)) {
  :host {
  ${palette((light, dark) => `light-dark(${light}, ${dark})`)}
  }
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
/* Heard by screen readers, not shown: the answer is on screen in the result below. */
.answer-said { position: absolute; width: 1px; height: 1px; margin: 0; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
button { font: inherit; min-height: 44px; padding: 0.5rem var(--ds-gap); border-radius: 0.5rem; border: 2px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: var(--ds-surface); color: var(--ds-accent-text); border-color: var(--ds-accent-text); }
button[aria-disabled=true] { opacity: 0.55; cursor: not-allowed; }
button:focus-visible, .drop:focus-visible, summary:focus-visible { outline: 3px solid var(--ds-focus); outline-offset: 2px; }
.drop { border: 2px dashed var(--ds-dashed); border-radius: 0.75rem; padding: var(--ds-gap); text-align: center; background: var(--ds-subtle); }
.drop.over { background: var(--ds-over); border-color: var(--ds-accent-text); }
.buttons { display: flex; flex-wrap: wrap; gap: 0.5rem; justify-content: center; margin-top: 0.5rem; }
/* On a phone on its side the square preview would be taller than the screen: it shrinks so the
   whole square and the buttons below it fit (svh: the height with the browser's bars shown). */
.camera { position: relative; width: min(100%, max(12rem, calc(100vh - 5rem))); width: min(100%, max(12rem, calc(100svh - 5rem)));
  margin-inline: auto; aspect-ratio: 1; background: #000; border-radius: 0.75rem; overflow: hidden; }
.camera video { width: 100%; height: 100%; object-fit: cover; }
.guide { position: absolute; inset: 0; margin: auto; width: ${GUIDE_FRACTION * 100}%; aspect-ratio: 1;
  border: 3px solid #fff; border-radius: 0.5rem; box-shadow: 0 0 0 100vmax rgba(0,0,0,0.45); pointer-events: none; }
/* Below the square, not over its edge, down to a preview some 300 px high (a phone on its side). */
.guide-text { position: absolute; left: 0; right: 0; bottom: 0.25rem; padding: 0 0.5rem; text-align: center; color: #fff;
  font-size: 0.85rem; line-height: 1.25; }
.status { margin: 0.75rem 0; color: var(--ds-muted); font-size: 0.95rem; }
progress { width: 100%; height: 0.75rem; }
.notice { border-left: 4px solid #b35900; background: var(--ds-notice); padding: 0.5rem 0.75rem; margin: 0.75rem 0; }
.error { border-left: 4px solid var(--ds-high); background: var(--ds-error); padding: 0.5rem 0.75rem; margin: 0.75rem 0; }
.error button { display: block; margin-top: 0.5rem; }
.result { border: 1px solid var(--ds-line); border-radius: 0.75rem; padding: var(--ds-gap); margin-top: 0.75rem; }
/* The size and spacing the heading had as an h3. */
.result h2 { font-size: 1.17em; margin-block: 1em; }
/* The words go under the photo where they would not fit beside it (large text on a phone). */
.result-head { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.result-head > div { flex: 1 1 8rem; }
.result-head img { width: 96px; height: 96px; object-fit: cover; border-radius: 0.5rem; flex: none; }
.risk { font-size: 1.2rem; font-weight: 700; margin: 0; }
.risk.high { color: var(--ds-high); }
.risk.low { color: var(--ds-low); }
.risk.gated { color: var(--ds-gated); }
.population, .kind { font-size: 0.9rem; color: var(--ds-muted); }
.advice { margin: 0.25rem 0 0; }
.advice.high { font-weight: 700; }
ol.top { padding-left: 1.25rem; }
.bar { display: block; height: 0.5rem; background: var(--ds-track); border-radius: 0.25rem; overflow: hidden; margin: 0.15rem 0 0.4rem; }
.bar > span { display: block; height: 100%; background: var(--ds-accent-text); }
.tree ul { list-style: none; padding-left: var(--ds-gap); margin: 0.25rem 0; border-left: 1px solid var(--ds-line); }
.tree > ul { padding-left: 0; border-left: 0; }
.pct { font-variant-numeric: tabular-nums; font-weight: 600; }
.meta { font-size: 0.85rem; color: var(--ds-muted); margin-top: 0.75rem; }
.disclaimer { font-size: 0.9rem; color: var(--ds-muted); margin-top: 0.75rem; }
button.saliency-toggle { margin-top: 0.75rem; }
figure.saliency { margin: 0.75rem 0 0; max-width: 336px; }
figure.saliency canvas { display: block; width: 100%; height: auto; border-radius: 0.5rem; }
.legend { margin-top: 0.4rem; font-size: 0.85rem; color: var(--ds-muted); }
.legend .ramp { display: block; height: 0.75rem; border-radius: 0.25rem; }
.legend-ends { display: flex; justify-content: space-between; }
/* Forced colours (Windows high contrast) drop background colours and gradients, but the bars and
   the map's colour scale are data: the scale keeps its colours, the bars take system colours. */
@media (forced-colors: active) {
  .legend .ramp { forced-color-adjust: none; }
  .bar { border: 1px solid CanvasText; }
  .bar > span { forced-color-adjust: none; background: Highlight; }
}
/* Printed (or saved as PDF) to show a doctor: the answer, not the controls; the bars keep their fill. */
@media print {
  :host { color-scheme: light; } /* paper is white: dark mode's light text would barely show */
  .drop, .camera, .camera-buttons, .camera-notice, .status, .context-slot, .recheck, button { display: none !important; }
  .bar, .bar > span { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
  /* On paper no one can open the tree: it is printed whole, closed or not (browsers without
     ::details-content, before 2025, print its summary line only). */
  details.tree::details-content { content-visibility: visible; display: block; }
  details.tree > summary { list-style: none; font-weight: 600; }
  details.tree > summary::-webkit-details-marker { display: none; }
}
figure.saliency figcaption { font-size: 0.9rem; margin-top: 0.25rem; }
details.context { margin-top: 0.75rem; border: 1px solid var(--ds-line); border-radius: 0.75rem; padding: 0.5rem 0.75rem; }
details.context summary { min-height: 44px; display: flex; align-items: center; cursor: pointer; font-weight: 600; }
.context-form .hint { font-size: 0.9rem; color: var(--ds-muted); margin: 0.25rem 0 0.5rem; }
.context-form .refused { font-size: 0.9rem; color: var(--ds-high); margin: 0 0 0.25rem; }
.context-form input[aria-invalid=true] { outline: 2px solid var(--ds-high); }
.context-form fieldset { border: 0; padding: 0; margin: 0.5rem 0; }
.context-form legend { font-weight: 600; padding: 0; }
.context-form .choices label, .context-form .remember { display: inline-flex; align-items: center; min-height: 44px;
  padding: 0 0.75rem 0 0; cursor: pointer; }
.context-form input[type=radio], .context-form input[type=checkbox] { width: 1.25rem; height: 1.25rem; margin-right: 0.35rem; flex: none; }
.context-form .remember { padding-right: 0; } /* alone on its line: the room is its words' */
.context-form .field { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem; min-height: 44px; margin: 0.25rem 0; }
.context-form input[type=number], .context-form select { font: inherit; min-height: 44px; padding: 0 0.5rem; max-width: 100%; }
.context-form input[type=number] { width: 6rem; }
.context-used { font-size: 0.9rem; color: var(--ds-muted); }
.recheck { margin: 0.75rem 0 0; }
.recheck button { margin-top: 0.25rem; }
`;

let sheet = null;

/** The element's stylesheet: parsed once on the page, shared by every element's shadow root. */
export function styleSheet() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  }
  return sheet;
}

// The optional patient-context form of <derm-screen>: age, sex, body site and six yes/no
// questions about the spot. Nothing is required; every control has a "not given" choice and a
// large target. The view only: the element decides what to do with the answers.

import { el } from './result-view.js';

const QUESTIONS = {
  grew: 'Has it grown?',
  changed: 'Has it changed in shape or colour?',
  bled: 'Has it bled?',
  itched: 'Does it itch?',
  hurt: 'Does it hurt?',
  elevated: 'Is it raised above the skin?',
};

/** A group of radio buttons named `name`: [value, label] pairs, the first checked. */
function radios(name, legend, choices) {
  return el('fieldset', { class: 'choices' }, el('legend', { text: legend }),
    ...choices.map(([value, label], i) => {
      const input = el('input', { type: 'radio', name, value });
      if (i === 0) input.checked = true;
      return el('label', {}, input, ` ${label}`);
    }));
}

/**
 * Builds the form for `model` (its `context_fields` and `context_sites`). `onChange(fields)`
 * gets every answer as a string ('' = not given) whenever one changes. Returns the element,
 * `set(fields)` / `values()` to fill and read it, and `markRefused(names)` to say which typed
 * answers are not used.
 */
export function contextForm(model, onChange) {
  const fields = new Set(model.context_fields);
  const site = el('select', { name: 'site' }, el('option', { value: '', text: 'Not given' }),
    ...model.context_sites.map((s) => el('option', { value: s, text: s[0].toUpperCase() + s.slice(1) })));
  const form = el('form', { class: 'context-form' },
    el('p', { class: 'hint', text: 'Nothing here is required. Answers can make the estimate fit you better; they stay on this device and apply to the photos you check next, and to the one shown if you check it again.' }),
    el('label', { class: 'field' }, 'Age in years ', el('input', { type: 'number', name: 'age', min: '0', max: '120', inputmode: 'numeric' })),
    radios('sex', 'Sex', [['', 'Not given'], ['female', 'Female'], ['male', 'Male']]),
    el('label', { class: 'field' }, 'Where on the body ', site),
    ...Object.entries(QUESTIONS).filter(([q]) => fields.has(q))
      .map(([q, text]) => radios(q, text, [['', 'Not sure'], ['true', 'Yes'], ['false', 'No']])),
    el('label', { class: 'remember' }, el('input', { type: 'checkbox', name: 'remember' }), ' Remember my age and sex on this device'),
    el('button', { type: 'button', class: 'secondary clear', text: 'Clear answers' }));
  const details = el('details', { class: 'context' },
    el('summary', { text: 'Add details (optional): age, sex, where on the body, changes' }), form);
  const values = () => {
    const data = new FormData(form);
    return Object.fromEntries(model.context_fields.map((f) => [f, String(data.get(f) ?? '').trim()]));
  };
  // Only a typed answer (the age) can be one the model refuses: the other controls offer its choices.
  const markRefused = (names) => {
    for (const input of form.querySelectorAll('input[type=number]')) {
      const refused = names.includes(input.name);
      const id = `${input.name}-refused`;
      let note = form.querySelector(`#${id}`);
      if (refused && !note) {
        note = el('p', { class: 'refused', id });
        input.closest('label').after(note);
        input.setAttribute('aria-describedby', id);
      }
      if (note) {
        note.textContent = `Not used: enter a number from ${input.min} to ${input.max}.`;
        note.hidden = !refused;
      }
      input.setAttribute('aria-invalid', String(refused));
    }
  };
  const set = (answers) => {
    for (const f of model.context_fields) {
      const value = answers[f] == null ? '' : String(answers[f]);
      const control = form.elements.namedItem(f);
      if (control instanceof RadioNodeList) {
        for (const r of control) r.checked = r.value === value;
      } else if (control) control.value = value;
    }
    markRefused([]); // what is set was accepted
  };
  form.addEventListener('change', () => onChange(values(), form.elements.namedItem('remember').checked));
  form.addEventListener('submit', (e) => e.preventDefault());
  form.querySelector('.clear').addEventListener('click', () => {
    set({});
    onChange(values(), form.elements.namedItem('remember').checked);
  });
  return { element: details, set, values, markRefused, remember: (on) => { form.elements.namedItem('remember').checked = on; } };
}

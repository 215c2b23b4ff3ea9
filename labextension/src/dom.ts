/** A tiny DOM builder: the panel and dialogs are plain elements inside Lumino widgets. */
export type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | number | EventListener | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value as EventListener);
    } else if (key === 'className') {
      el.className = String(value);
    } else if (value === true) {
      el.setAttribute(key, '');
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: HTMLElement, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

let counter = 0;
/** A unique id for label/input pairs. */
export function uid(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** A labelled form row: <label for> + control. */
export function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  const id = control.id || uid('mlp-field');
  control.id = id;
  return h(
    'div',
    { className: 'mlp-field' },
    h('label', { for: id }, label),
    control,
    hint ? h('span', { className: 'mlp-hint' }, hint) : null
  );
}

export function select(options: { value: string; label: string }[], value?: string, attrs: Record<string, string> = {}): HTMLSelectElement {
  const el = h('select', attrs);
  for (const option of options) {
    const opt = h('option', { value: option.value }, option.label);
    if (option.value === value) {
      opt.selected = true;
    }
    el.appendChild(opt);
  }
  return el;
}

/** A small SVG line chart of one metric over steps. */
export function sparkline(values: number[], label: string): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const width = 160;
  const height = 36;
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.classList.add('mlp-chart');
  const min = Math.min(...values);
  const max = Math.max(...values);
  const span = max - min || 1;
  const step = values.length > 1 ? (width - 4) / (values.length - 1) : 0;
  const points = values
    .map((v, i) => `${(2 + i * step).toFixed(1)},${(height - 2 - ((v - min) / span) * (height - 4)).toFixed(1)}`)
    .join(' ');
  const line = document.createElementNS(ns, values.length > 1 ? 'polyline' : 'circle');
  if (values.length > 1) {
    line.setAttribute('points', points);
  } else {
    line.setAttribute('cx', String(width / 2));
    line.setAttribute('cy', String(height / 2));
    line.setAttribute('r', '3');
  }
  svg.appendChild(line);
  return svg;
}

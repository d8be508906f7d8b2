// flowgate preview: draws WhatsApp Flow screens from their Flow JSON and talks to the
// flow service through the gateway's preview API (api/routes, api/flow, api/check,
// api/exchange, relative to this page).
//
// Hand-written, no build step. Untrusted text (Flow JSON, answers) only ever reaches
// the page as text nodes or attribute values: never through innerHTML.
(function () {
  'use strict';

  // ---------------------------------------------------------------- DOM helpers

  /** Creates an element: `attrs` are attributes (`class`, `data-*`, …) except
   *  `text` (textContent) and `on*` functions (listeners); children are nodes or strings. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = String(value);
      else if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), value);
      else if (value === true) node.setAttribute(key, '');
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(typeof child === 'string' ? document.createTextNode(child) : child);
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);
  const pretty = (value) => JSON.stringify(value, null, 2);
  let uid = 0;
  const nextId = (prefix) => `${prefix}-${++uid}`;

  // ---------------------------------------------------------------- state

  const state = {
    routes: [],
    /** The flow picked in the list: {route, flow, signed}. */
    selected: null,
    /** The running flow, or null. */
    session: null,
    /** Whether the token field holds what the user typed (else one the page picked). */
    tokenTyped: false,
  };

  // ---------------------------------------------------------------- API

  async function api(method, path, body) {
    const init = { method, cache: 'no-store', headers: {} };
    if (body !== undefined) {
      init.headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      return { status: 0, json: { error: { code: 'network', message: String(error) } } };
    }
    const text = await response.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch (_) {
      json = { error: { code: 'not_json', message: text.slice(0, 500) } };
    }
    return { status: response.status, json };
  }

  /** `{code, message}` of an error body, as one line. */
  function errorText(body, status) {
    if (body && typeof body === 'object') {
      const error = body.error;
      if (error && typeof error === 'object') {
        return [error.code, error.message].filter(Boolean).join(': ') || pretty(error);
      }
      if (typeof error === 'string') return body.error_message ? `${error}: ${body.error_message}` : error;
    }
    return `HTTP ${status}${body ? ': ' + JSON.stringify(body).slice(0, 300) : ''}`;
  }

  // ---------------------------------------------------------------- side panel

  function logEntry({ kind, title, status, latency, request, answer, violations, note }) {
    const ok = status === undefined || status === 200;
    const head = el('header', {},
      el('span', { class: 'log-kind', 'data-testid': 'log-kind', text: kind }),
      title ? el('span', { class: 'log-title', text: title }) : null,
      status !== undefined ? el('span', { class: ok ? 'log-status' : 'log-status bad', 'data-testid': 'log-status', text: String(status) }) : null,
      latency !== undefined && latency !== null ? el('span', { class: 'log-latency', 'data-testid': 'log-latency', text: `${Number(latency).toFixed(1)} ms` }) : null);
    const entry = el('article', { class: 'log-entry', 'data-testid': 'log-entry', 'data-kind': kind }, head);
    if (note) entry.append(el('p', { class: 'log-note', text: note }));
    if (request !== undefined) {
      entry.append(el('details', { open: true }, el('summary', { text: 'Request' }),
        el('pre', { 'data-testid': 'log-request', text: pretty(request) })));
    }
    if (answer !== undefined) {
      entry.append(el('details', { open: true }, el('summary', { text: 'Answer' }),
        el('pre', { 'data-testid': 'log-answer', text: pretty(answer) })));
    }
    if (Array.isArray(violations) && violations.length) {
      entry.classList.add('has-violations');
      entry.append(el('ul', { class: 'violations', 'aria-label': 'Flow JSON violations' },
        violations.map((v) => el('li', { class: 'violation', 'data-testid': 'violation' },
          el('span', { text: v && v.message !== undefined ? String(v.message) : JSON.stringify(v) }),
          v && v.path ? el('code', { text: String(v.path) }) : null))));
    }
    const log = $('log');
    log.append(entry);
    log.scrollTop = log.scrollHeight;
    return entry;
  }

  // ---------------------------------------------------------------- bindings and expressions

  /** Looks a dotted path (`data.a.b`, `form.x`, `screen.ID.form.x`) up in `ctx`. */
  function lookup(path, ctx) {
    const parts = path.split('.').map((p) => p.trim()).filter((p) => p.length);
    if (!parts.length) return undefined;
    let value;
    let rest;
    if (parts[0] === 'data') {
      value = ctx.data;
      rest = parts.slice(1);
    } else if (parts[0] === 'form') {
      value = ctx.form;
      rest = parts.slice(1);
    } else if (parts[0] === 'screen' && parts.length >= 3) {
      const entry = ctx.screen(parts[1]);
      if (!entry) return undefined;
      value = parts[2] === 'form' ? entry.form : parts[2] === 'data' ? entry.data : undefined;
      rest = parts.slice(3);
    } else {
      return undefined;
    }
    for (const part of rest) {
      if (value === null || value === undefined) return undefined;
      value = Array.isArray(value) && /^\d+$/.test(part) ? value[Number(part)] : value[part];
    }
    return value;
  }

  const WHOLE_BINDING = /^\s*\$\{([^{}]*)\}\s*$/;

  /** A string value: a sole binding gives the bound value as it is (array, boolean…),
   *  a backtick expression is evaluated, other text has each binding interpolated. */
  function resolve(value, ctx) {
    if (typeof value !== 'string') return value;
    const whole = WHOLE_BINDING.exec(value);
    if (whole) return lookup(whole[1], ctx);
    const trimmed = value.trim();
    if (trimmed.length > 1 && trimmed.startsWith('`') && trimmed.endsWith('`')) {
      try {
        return evaluate(trimmed.slice(1, -1), ctx);
      } catch (_) {
        return value;
      }
    }
    if (!value.includes('${')) return value;
    return value.replace(/\$\{([^{}]*)\}/g, (_, path) => display(lookup(path, ctx)));
  }

  /** Payloads and other nested values: every string resolved, undefined keys dropped. */
  function resolveDeep(value, ctx) {
    if (Array.isArray(value)) return value.map((v) => resolveDeep(v, ctx));
    if (value && typeof value === 'object') {
      const out = {};
      for (const [key, v] of Object.entries(value)) {
        const resolved = resolveDeep(v, ctx);
        if (resolved !== undefined) out[key] = resolved;
      }
      return out;
    }
    return resolve(value, ctx);
  }

  function display(value) {
    if (value === undefined || value === null) return '';
    if (typeof value === 'object') return JSON.stringify(value);
    return String(value);
  }

  function tokenize(src) {
    const tokens = [];
    let i = 0;
    while (i < src.length) {
      const c = src[i];
      if (/\s/.test(c) || c === '`') { i++; continue; }
      if (src.startsWith('${', i)) {
        const end = src.indexOf('}', i);
        if (end < 0) throw new Error('unclosed ${');
        tokens.push({ t: 'ref', v: src.slice(i + 2, end).trim() });
        i = end + 1;
        continue;
      }
      if (c === "'" || c === '"') {
        let j = i + 1;
        let s = '';
        while (j < src.length && src[j] !== c) {
          if (src[j] === '\\' && j + 1 < src.length) { s += src[j + 1]; j += 2; } else s += src[j++];
        }
        if (j >= src.length) throw new Error('unclosed string');
        tokens.push({ t: 'lit', v: s });
        i = j + 1;
        continue;
      }
      const number = /^\d+(\.\d+)?/.exec(src.slice(i));
      if (number) {
        tokens.push({ t: 'lit', v: Number(number[0]) });
        i += number[0].length;
        continue;
      }
      const op = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '!', '(', ')', '-'].find((o) => src.startsWith(o, i));
      if (op) {
        tokens.push({ t: 'op', v: op });
        i += op.length;
        continue;
      }
      const word = /^[A-Za-z_]+/.exec(src.slice(i));
      if (word && ['true', 'false', 'null'].includes(word[0])) {
        tokens.push({ t: 'lit', v: JSON.parse(word[0]) });
        i += word[0].length;
        continue;
      }
      throw new Error(`unexpected "${src.slice(i, i + 10)}"`);
    }
    return tokens;
  }

  /** Evaluates a condition: `${…}` bindings, literals, `!`, `==`, `!=`, `<`, `<=`,
   *  `>`, `>=`, `&&`, `||` and parentheses. Throws on anything else. */
  function evaluate(src, ctx) {
    const tokens = tokenize(String(src));
    let pos = 0;
    const peek = () => tokens[pos];
    const isOp = (v) => peek() && peek().t === 'op' && peek().v === v;
    function primary() {
      const token = tokens[pos++];
      if (!token) throw new Error('unexpected end');
      if (token.t === 'ref') return lookup(token.v, ctx);
      if (token.t === 'lit') return token.v;
      if (token.v === '(') {
        const value = or();
        if (!isOp(')')) throw new Error('missing )');
        pos++;
        return value;
      }
      if (token.v === '!') return !truthy(primary());
      if (token.v === '-') return -Number(primary());
      throw new Error(`unexpected ${token.v}`);
    }
    function comparison() {
      let left = primary();
      while (peek() && peek().t === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(peek().v)) {
        const op = tokens[pos++].v;
        const right = primary();
        left = compare(op, left, right);
      }
      return left;
    }
    function and() {
      let left = comparison();
      while (isOp('&&')) { pos++; const right = comparison(); left = truthy(left) && truthy(right); }
      return left;
    }
    function or() {
      let left = and();
      while (isOp('||')) { pos++; const right = and(); left = truthy(left) || truthy(right); }
      return left;
    }
    const value = or();
    if (pos !== tokens.length) throw new Error(`unexpected ${tokens[pos].v}`);
    return value;
  }

  function compare(op, a, b) {
    // Form fields hold strings: compare as numbers when both sides are numeric.
    const numeric = (v) => typeof v === 'number' || (typeof v === 'string' && v.trim() !== '' && !isNaN(Number(v)));
    if (numeric(a) && numeric(b) && (typeof a === 'number' || typeof b === 'number' || !['==', '!='].includes(op))) {
      a = Number(a);
      b = Number(b);
    }
    switch (op) {
      case '==': return a === b || (a == null && b == null);
      case '!=': return !(a === b || (a == null && b == null));
      case '<': return a < b;
      case '<=': return a <= b;
      case '>': return a > b;
      default: return a >= b;
    }
  }

  function truthy(value) {
    if (Array.isArray(value)) return value.length > 0;
    return Boolean(value);
  }

  /** A boolean property (`visible`, `enabled`, `required`, `condition`): a literal, a
   *  binding or an expression; `fallback` when absent. */
  function flag(value, ctx, fallback) {
    if (value === undefined || value === null) return fallback;
    if (typeof value === 'boolean') return value;
    if (typeof value === 'string') {
      const trimmed = value.trim().replace(/^`|`$/g, '');
      return truthy(evaluate(trimmed, ctx));
    }
    return truthy(value);
  }

  // ---------------------------------------------------------------- markdown (RichText, TextBody with markdown)

  const INLINE = [
    { re: /\*\*([^*]+)\*\*/, make: (m) => el('strong', {}, inline(m[1])) },
    { re: /~~([^~]+)~~/, make: (m) => el('s', {}, inline(m[1])) },
    { re: /\*([^*]+)\*/, make: (m) => el('em', {}, inline(m[1])) },
    { re: /(^|[^\w])_([^_]+)_(?!\w)/, lead: 1, make: (m) => el('em', {}, inline(m[2])) },
    { re: /`([^`]+)`/, make: (m) => el('code', { text: m[1] }) },
    {
      re: /\[([^\]]+)\]\(([^)\s]+)\)/,
      make: (m) => /^https?:\/\//i.test(m[2])
        ? el('a', { href: m[2], target: '_blank', rel: 'noopener noreferrer' }, inline(m[1]))
        : el('span', { class: 'md-link' }, inline(m[1])),
    },
  ];

  /** Inline markdown as nodes: the earliest match wins, text between is text. */
  function inline(text) {
    const nodes = [];
    let rest = text;
    while (rest.length) {
      let best = null;
      for (const rule of INLINE) {
        const m = rule.re.exec(rest);
        if (!m) continue;
        const start = m.index + (rule.lead ? m[rule.lead].length : 0);
        if (!best || start < best.start) best = { rule, m, start };
      }
      if (!best) { nodes.push(document.createTextNode(rest)); break; }
      if (best.start > 0) nodes.push(document.createTextNode(rest.slice(0, best.start)));
      nodes.push(best.rule.make(best.m));
      rest = rest.slice(best.m.index + best.m[0].length);
    }
    return nodes;
  }

  /** Block markdown: `#`/`##` headings, `-`/`*`/`+` and `1.` lists, paragraphs. */
  function markdown(text) {
    const out = el('div', { class: 'md' });
    let list = null;
    let paragraph = null;
    for (const line of String(text).split('\n')) {
      const heading = /^(#{1,2})\s+(.*)$/.exec(line);
      const bullet = /^\s*[-*+]\s+(.*)$/.exec(line);
      const ordered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
      if (heading) {
        list = paragraph = null;
        out.append(el(heading[1].length === 1 ? 'h3' : 'h4', { class: 'md-heading' }, inline(heading[2])));
      } else if (bullet || ordered) {
        paragraph = null;
        const tag = bullet ? 'ul' : 'ol';
        if (!list || list.tagName.toLowerCase() !== tag) { list = el(tag); out.append(list); }
        list.append(el('li', {}, inline((bullet || ordered)[1])));
      } else if (!line.trim()) {
        list = paragraph = null;
      } else {
        list = null;
        if (paragraph) paragraph.append(el('br'));
        else { paragraph = el('p'); out.append(paragraph); }
        paragraph.append(...inline(line));
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- Flow JSON helpers

  function screensOf(flowJson) {
    const map = new Map();
    for (const screen of (flowJson && Array.isArray(flowJson.screens) ? flowJson.screens : [])) {
      if (screen && typeof screen.id === 'string') map.set(screen.id, screen);
    }
    return map;
  }

  /** The screen a flow without an endpoint opens on: the first screen no route leads to. */
  function entryScreen(flowJson) {
    const screens = Array.isArray(flowJson.screens) ? flowJson.screens : [];
    const routing = flowJson.routing_model;
    if (routing && typeof routing === 'object') {
      const targets = new Set(Object.values(routing).flat());
      const root = screens.find((s) => s && !targets.has(s.id));
      if (root) return root.id;
    }
    return screens.length ? screens[0].id : null;
  }

  /** A screen's declared data, from each field's `__example__`. */
  function exampleData(screen) {
    const out = {};
    for (const [key, decl] of Object.entries((screen && screen.data) || {})) {
      if (decl && typeof decl === 'object' && '__example__' in decl) out[key] = decl.__example__;
    }
    return out;
  }

  /** The form's starting values: each Form's `init-values` and each field's `init-value`. */
  function initialForm(screen, data) {
    const form = {};
    const ctx = { data, form: {}, screen: () => null };
    const walk = (nodes) => {
      for (const node of Array.isArray(nodes) ? nodes : []) {
        if (!node || typeof node !== 'object') continue;
        if (node.type === 'Form' && node['init-values'] !== undefined) {
          const values = resolveDeep(node['init-values'], ctx);
          if (values && typeof values === 'object') Object.assign(form, values);
        }
        if (node.name && node['init-value'] !== undefined) form[node.name] = resolveDeep(node['init-value'], ctx);
        walk(node.children);
        walk(node.then);
        walk(node.else);
        if (node.cases && typeof node.cases === 'object') Object.values(node.cases).forEach(walk);
      }
    };
    walk(screen && screen.layout && screen.layout.children);
    return form;
  }

  const newEntry = (session, id, data) => {
    const safeData = data && typeof data === 'object' && !Array.isArray(data) ? data : {};
    return { id, data: safeData, form: initialForm(session.screens.get(id), safeData), errors: {}, banner: safeData.error_message || null };
  };

  // ---------------------------------------------------------------- sessions

  function randomToken() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return 'preview-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** Starts `flow` on `route` with `flowJson`. */
  async function start({ route, flow, flowJson, uploaded, hasEndpoint, token }) {
    const session = {
      route, flow, flowJson, uploaded, hasEndpoint, token,
      screens: screensOf(flowJson),
      version: parseFloat(flowJson.version) || 0,
      history: [],
      cur: null,
      done: null,
      busy: false,
      message: null,
    };
    state.session = session;
    $('restart').disabled = false;
    $('close').disabled = false;
    if (hasEndpoint) {
      render();
      const result = await exchange(session, 'INIT', undefined, undefined);
      if (state.session !== session) return;
      applyAnswer(session, result, 'init');
    } else {
      const id = entryScreen(flowJson);
      if (!id) {
        session.message = 'This Flow JSON has no screens.';
        render();
        return;
      }
      session.cur = newEntry(session, id, exampleData(session.screens.get(id)));
      logEntry({ kind: 'local', title: id, note: 'No data_api_version: this flow has no endpoint; it opens on its first screen with each field\'s __example__ as data and navigates locally.', answer: { screen: id, data: session.cur.data } });
      render();
    }
  }

  async function exchange(session, action, screen, data) {
    const request = { version: '3.0', action, flow_token: session.token };
    if (screen !== undefined) request.screen = screen;
    if (data !== undefined) request.data = data;
    const body = { route: session.route, flow: session.flow || null, flow_json: session.uploaded ? session.flowJson : null, request };
    session.busy = true;
    render();
    const started = performance.now();
    const { status, json } = await api('POST', 'api/exchange', body);
    session.busy = false;
    const title = `${session.flow || session.route}${screen ? ' · ' + screen : ''}`;
    if (status === 200 && json && typeof json === 'object' && 'status' in json) {
      logEntry({
        kind: action, title, status: json.status,
        latency: typeof json.latency_ms === 'number' ? json.latency_ms : performance.now() - started,
        request, answer: json.answer, violations: json.violations,
      });
      return { ok: true, status: json.status, answer: json.answer };
    }
    logEntry({ kind: action, title, status, latency: performance.now() - started, request, answer: json, note: 'The preview API refused the exchange.', violations: json && json.violations });
    return { ok: false, status, answer: json };
  }

  /** Draws what the endpoint answered; `how` is `init`, `forward`, `same` or `back`. */
  function applyAnswer(session, result, how) {
    if (state.session !== session) return;
    const { status, answer } = result;
    if (!result.ok || status !== 200 || !answer || typeof answer !== 'object' || answer.error !== undefined && !answer.screen) {
      showBanner(session, errorText(answer, status));
      return;
    }
    if (answer.screen === 'SUCCESS') {
      const params = answer.data && answer.data.extension_message_response && answer.data.extension_message_response.params;
      session.done = { params: params || {}, via: 'SUCCESS' };
      render();
      return;
    }
    if (typeof answer.screen !== 'string') {
      showBanner(session, 'The answer names no screen.');
      return;
    }
    const data = answer.data && typeof answer.data === 'object' ? answer.data : {};
    const cur = session.cur;
    if (cur && cur.id === answer.screen && how !== 'init') {
      // The same screen again (an error, or new options after a select): keep what
      // the user entered, as WhatsApp does.
      cur.data = data;
      cur.errors = {};
      cur.banner = data.error_message || null;
    } else if (how === 'back') {
      const at = session.history.map((e) => e.id).lastIndexOf(answer.screen);
      if (at >= 0) session.history.length = at;
      session.cur = newEntry(session, answer.screen, data);
    } else {
      if (cur && how !== 'init') session.history.push(cur);
      session.cur = newEntry(session, answer.screen, data);
    }
    render();
  }

  function showBanner(session, message) {
    if (session.cur) session.cur.banner = message;
    else session.message = message;
    render();
  }

  function contextOf(session, entry) {
    return {
      data: entry.data,
      form: entry.form,
      screen: (id) => (id === entry.id ? entry : [...session.history].reverse().find((e) => e.id === id) || null),
    };
  }

  /** Runs a Flow JSON action; `submit` checks the form first (footers, links). */
  async function runAction(action, submit) {
    const session = state.session;
    if (!session || !session.cur || session.busy || !action || typeof action !== 'object') return;
    const cur = session.cur;
    if (submit && !validate(session)) return;
    const ctx = contextOf(session, cur);
    const payload = resolveDeep(action.payload || {}, ctx);
    switch (action.name) {
      case 'data_exchange': {
        if (!session.hasEndpoint) {
          showBanner(session, 'data_exchange needs an endpoint, and this Flow JSON has no data_api_version.');
          return;
        }
        cur.banner = null;
        const result = await exchange(session, 'data_exchange', cur.id, payload);
        applyAnswer(session, result, 'forward');
        return;
      }
      case 'navigate': {
        const next = action.next && action.next.name;
        logEntry({ kind: 'navigate', title: `${cur.id} → ${next}`, answer: payload });
        if (!session.screens.has(next)) {
          showBanner(session, `navigate: no screen "${next}" in the Flow JSON.`);
          return;
        }
        session.history.push(cur);
        session.cur = newEntry(session, next, payload);
        render();
        return;
      }
      case 'complete':
        logEntry({ kind: 'complete', title: cur.id, answer: payload });
        session.done = { params: payload, via: 'complete' };
        render();
        return;
      case 'update_data':
        Object.assign(cur.data, payload);
        render();
        return;
      case 'open_url': {
        const url = String(action.url || '');
        logEntry({ kind: 'open_url', title: url });
        if (/^https?:\/\//i.test(url)) window.open(url, '_blank', 'noopener,noreferrer');
        return;
      }
      default:
        showBanner(session, `Unsupported action: ${action.name}`);
    }
  }

  async function goBack() {
    const session = state.session;
    if (!session || session.busy || session.done || !session.cur) return;
    const screen = session.screens.get(session.cur.id);
    if (session.hasEndpoint && screen && screen.refresh_on_back === true) {
      const result = await exchange(session, 'BACK', session.cur.id, undefined);
      applyAnswer(session, result, 'back');
      return;
    }
    if (!session.history.length) return;
    session.cur = session.history.pop();
    session.cur.banner = null;
    logEntry({ kind: 'back', title: session.cur.id, note: 'Back on this device: no refresh_on_back, so no request.' });
    render();
  }

  // ---------------------------------------------------------------- validation

  /** The fields drawn on the current screen, collected while drawing it. */
  let fields = [];

  function isEmpty(value) {
    return value === undefined || value === null || value === '' || value === false || (Array.isArray(value) && !value.length);
  }

  function validate(session) {
    const cur = session.cur;
    const errors = {};
    for (const field of fields) {
      const value = cur.form[field.name];
      if (field.required && isEmpty(value)) errors[field.name] = 'Required';
      else if (typeof value === 'string' && value.length) {
        if (field.min !== undefined && value.length < field.min) errors[field.name] = `At least ${field.min} characters`;
        if (field.max !== undefined && value.length > field.max) errors[field.name] = `At most ${field.max} characters`;
      } else if (Array.isArray(value)) {
        if (field.minItems !== undefined && value.length < field.minItems) errors[field.name] = `Choose at least ${field.minItems}`;
        if (field.maxItems !== undefined && value.length > field.maxItems) errors[field.name] = `Choose at most ${field.maxItems}`;
      }
    }
    cur.errors = errors;
    if (Object.keys(errors).length) {
      render();
      return false;
    }
    return true;
  }

  // ---------------------------------------------------------------- drawing

  function render() {
    const session = state.session;
    const body = $('body');
    const footer = $('footer');
    const banner = $('banner');
    body.replaceChildren();
    footer.replaceChildren();
    fields = [];
    $('phone').classList.toggle('busy', Boolean(session && session.busy));
    body.setAttribute('aria-busy', session && session.busy ? 'true' : 'false');
    const setBanner = (message) => {
      banner.hidden = !message;
      banner.textContent = message || '';
    };
    if (!session) {
      $('title').textContent = 'No flow';
      body.removeAttribute('data-screen');
      body.append(el('p', { class: 'empty', text: 'Pick a flow on the left, or load a Flow JSON file.' }));
      setBanner(null);
      $('back').disabled = true;
      return;
    }
    if (session.done) {
      $('title').textContent = session.flow || session.route;
      body.setAttribute('data-screen', 'SUCCESS');
      setBanner(null);
      $('back').disabled = true;
      body.append(renderDone(session));
      return;
    }
    const cur = session.cur;
    if (!cur) {
      $('title').textContent = session.flow || session.route;
      body.removeAttribute('data-screen');
      setBanner(session.message);
      body.append(el('p', { class: 'empty', text: session.busy ? 'Starting…' : 'No screen.' }));
      $('back').disabled = true;
      return;
    }
    const screen = session.screens.get(cur.id);
    const ctx = contextOf(session, cur);
    body.setAttribute('data-screen', cur.id);
    setBanner(cur.banner);
    $('back').disabled = session.busy || !(session.history.length || (session.hasEndpoint && screen && screen.refresh_on_back === true));
    if (!screen) {
      $('title').textContent = cur.id;
      body.append(el('div', { class: 'unsupported', 'data-testid': 'unknown-screen' },
        el('strong', { text: `The Flow JSON has no screen "${cur.id}".` }),
        el('pre', { text: pretty(cur.data) })));
      return;
    }
    $('title').textContent = display(resolve(screen.title || cur.id, ctx));
    const layout = screen.layout || {};
    const scope = { ctx, session, errorMessages: {}, footer };
    body.append(...renderChildren(layout.children, scope));
  }

  function renderChildren(children, scope) {
    const out = [];
    for (const child of Array.isArray(children) ? children : []) {
      const node = renderComponent(child, scope);
      if (node) out.push(node);
    }
    return out;
  }

  function renderComponent(c, scope) {
    if (!c || typeof c !== 'object') return unsupported(String(c));
    const { ctx } = scope;
    let visible;
    try {
      visible = flag(c.visible, ctx, true);
    } catch (error) {
      return problem(c.type, `visible: ${error.message}`);
    }
    if (!visible) return null;
    const draw = Object.prototype.hasOwnProperty.call(COMPONENTS, c.type) ? COMPONENTS[c.type] : null;
    if (!draw) return unsupported(c.type);
    try {
      const node = draw(c, scope);
      if (node && node.setAttribute && !node.hasAttribute('data-component')) node.setAttribute('data-component', c.type);
      return node;
    } catch (error) {
      return problem(c.type, error.message);
    }
  }

  function unsupported(type) {
    return el('div', { class: 'unsupported', 'data-testid': 'unsupported', 'data-component': String(type) },
      `Unsupported component: ${type}`);
  }

  function problem(type, message) {
    return el('div', { class: 'unsupported', 'data-testid': 'component-problem', 'data-component': String(type) },
      `${type}: ${message}`);
  }

  /** Text of a text component: a string, or an array of lines. */
  function textOf(c, ctx) {
    const value = Array.isArray(c.text) ? c.text.map((t) => display(resolve(t, ctx))).join('\n') : display(resolve(c.text, ctx));
    return value;
  }

  function textComponent(tag, cls) {
    return (c, { ctx }) => {
      const text = textOf(c, ctx);
      if (c.markdown === true) return el('div', { class: `text ${cls}` }, markdown(text));
      const node = el(tag, { class: `text ${cls}`, text });
      if (c['font-weight']) node.classList.add(`weight-${String(c['font-weight']).replace(/[^a-z_]/gi, '')}`);
      if (c.strikethrough === true) node.classList.add('strike');
      return node;
    };
  }

  /** The label, helper text and error around a field. */
  function fieldShell(c, scope, id, control, extra) {
    const { ctx } = scope;
    const name = c.name;
    const label = display(resolve(c.label, ctx));
    const required = flag(c.required, ctx, false);
    const error = scope.session.cur.errors[name] || scope.errorMessages[name] ||
      (c['error-message'] !== undefined ? display(resolve(c['error-message'], ctx)) : '');
    const helper = c['helper-text'] !== undefined ? display(resolve(c['helper-text'], ctx)) : '';
    const helperId = helper ? `${id}-help` : null;
    const errorId = error ? `${id}-error` : null;
    const described = [helperId, errorId].filter(Boolean).join(' ');
    if (described && control.setAttribute) control.setAttribute('aria-describedby', described);
    if (error && control.setAttribute) control.setAttribute('aria-invalid', 'true');
    return el('div', { class: error ? 'field invalid' : 'field', 'data-field': name },
      label ? el('label', { for: id, class: 'field-label' }, label, required ? '' : el('span', { class: 'optional', text: ' (optional)' })) : null,
      control,
      extra || null,
      helper ? el('p', { class: 'helper', id: helperId, text: helper }) : null,
      error ? el('p', { class: 'error', id: errorId, 'data-testid': `error-${name}`, role: 'alert', text: error }) : null);
  }

  function register(c, scope, extra) {
    const { ctx } = scope;
    if (!c.name) throw new Error('has no name');
    fields.push({ name: c.name, required: flag(c.required, ctx, false), ...extra });
  }

  function enabled(c, scope) {
    return flag(c.enabled, scope.ctx, true) && !scope.session.busy;
  }

  function setValue(scope, name, value) {
    const cur = scope.session.cur;
    cur.form[name] = value;
    if (cur.errors[name]) delete cur.errors[name];
  }

  /** Options of a Dropdown, RadioButtonsGroup or CheckboxGroup. */
  function options(c, ctx) {
    const source = resolve(c['data-source'], ctx);
    if (source === undefined) return [];
    if (!Array.isArray(source)) throw new Error('data-source is not an array');
    return source.filter((o) => o && typeof o === 'object').map((o) => ({
      id: display(o.id),
      title: display(o.title),
      description: o.description !== undefined ? display(o.description) : '',
      enabled: o.enabled !== false,
    }));
  }

  /** Runs `on-select-action` (or `on-unselect-action` when `selected` is false). */
  function onSelect(c, selected) {
    const action = selected ? c['on-select-action'] : c['on-unselect-action'];
    render();
    if (action) runAction(action, false);
  }

  /** Whether a screen's drawing (not its action payloads) depends on `form` values. */
  function drawnFromForm(screen) {
    const layout = JSON.stringify(screen && screen.layout, (key, value) => (key === 'payload' ? undefined : value)) || '';
    return /\bform\./.test(layout);
  }

  /** Text fields are not redrawn while typed in (that would lose the caret); when the
   *  screen's drawing depends on the form, leaving one redraws the screen, unless the
   *  focus moves to a button, whose own action redraws it. */
  function redrawOnLeave(control, scope) {
    const screen = scope.session.screens.get(scope.session.cur.id);
    if (!drawnFromForm(screen)) return;
    const drawnWith = control.value;
    control.addEventListener('focusout', (event) => {
      const next = event.relatedTarget;
      if (control.value === drawnWith || (next && next.tagName === 'BUTTON')) return;
      const testid = next && next.dataset ? next.dataset.testid : null;
      render();
      // The redraw replaced the field the focus was moving to: move it to the new one.
      if (testid) {
        const again = document.querySelector(`[data-testid="${CSS.escape(testid)}"]`);
        if (again) again.focus();
      }
    });
  }

  const INPUT_TYPES = { text: 'text', number: 'number', email: 'email', password: 'password', passcode: 'password', phone: 'tel' };

  function dateValue(iso, version) {
    // Flow JSON 5.0 and later: "YYYY-MM-DD"; before, a timestamp in milliseconds.
    if (!iso || version >= 5) return iso;
    return String(Date.parse(`${iso}T00:00:00Z`));
  }

  function isoDate(value) {
    if (value === undefined || value === null || value === '') return '';
    const text = String(value);
    if (/^\d{4}-\d{2}-\d{2}$/.test(text)) return text;
    if (/^\d+$/.test(text)) return new Date(Number(text)).toISOString().slice(0, 10);
    return '';
  }

  function imageSource(src) {
    const text = String(src || '').trim();
    if (/^data:image\/(png|jpe?g|gif|webp);base64,[A-Za-z0-9+/=\s]+$/i.test(text)) return text;
    if (!/^[A-Za-z0-9+/=\s]+$/.test(text) || !text) return null;
    const type = text.startsWith('iVBOR') ? 'png' : text.startsWith('/9j/') ? 'jpeg' : text.startsWith('R0lG') ? 'gif' : text.startsWith('UklGR') ? 'webp' : 'png';
    return `data:image/${type};base64,${text.replace(/\s/g, '')}`;
  }

  const COMPONENTS = {
    TextHeading: textComponent('h3', 'heading'),
    TextSubheading: textComponent('h4', 'subheading'),
    TextBody: textComponent('p', 'body'),
    TextCaption: textComponent('p', 'caption'),
    RichText: (c, { ctx }) => el('div', { class: 'text rich' }, markdown(textOf(c, ctx))),

    Form(c, scope) {
      const messages = c['error-messages'] !== undefined ? resolveDeep(c['error-messages'], scope.ctx) : {};
      const inner = { ...scope, errorMessages: { ...scope.errorMessages, ...(messages && typeof messages === 'object' ? messages : {}) } };
      return el('div', { class: 'form', 'data-form': c.name, role: 'group', 'aria-label': c.name || 'form' }, renderChildren(c.children, inner));
    },

    TextInput(c, scope) {
      register(c, scope, { min: c['min-chars'], max: c['max-chars'] });
      const id = nextId('f');
      const type = INPUT_TYPES[c['input-type'] || 'text'] || 'text';
      const value = scope.session.cur.form[c.name];
      const input = el('input', {
        id, type, name: c.name, 'data-testid': `field-${c.name}`,
        value: value === undefined ? '' : display(value),
        maxlength: Number.isInteger(c['max-chars']) ? c['max-chars'] : undefined,
        inputmode: c['input-type'] === 'passcode' ? 'numeric' : undefined,
        disabled: !enabled(c, scope),
        required: flag(c.required, scope.ctx, false),
        autocomplete: 'off',
      });
      input.addEventListener('input', () => setValue(scope, c.name, input.value));
      redrawOnLeave(input, scope);
      return fieldShell(c, scope, id, input);
    },

    TextArea(c, scope) {
      const max = c['max-length'] !== undefined ? c['max-length'] : c['max-chars'];
      register(c, scope, { max });
      const id = nextId('f');
      const value = scope.session.cur.form[c.name];
      const area = el('textarea', {
        id, name: c.name, 'data-testid': `field-${c.name}`, rows: 3,
        maxlength: Number.isInteger(max) ? max : undefined,
        disabled: !enabled(c, scope),
        required: flag(c.required, scope.ctx, false),
      });
      area.value = value === undefined ? '' : display(value);
      area.addEventListener('input', () => setValue(scope, c.name, area.value));
      redrawOnLeave(area, scope);
      return fieldShell(c, scope, id, area);
    },

    Dropdown(c, scope) {
      register(c, scope);
      const id = nextId('f');
      const items = options(c, scope.ctx);
      const value = scope.session.cur.form[c.name];
      const select = el('select', {
        id, name: c.name, 'data-testid': `field-${c.name}`,
        disabled: !enabled(c, scope) || !items.length,
        required: flag(c.required, scope.ctx, false),
      },
      el('option', { value: '', text: items.length ? 'Select…' : 'No options' }),
      items.map((o) => el('option', { value: o.id, disabled: !o.enabled, selected: o.id === value, text: o.title })));
      if (value !== undefined && !items.some((o) => o.id === value)) select.value = '';
      select.addEventListener('change', () => {
        setValue(scope, c.name, select.value === '' ? undefined : select.value);
        onSelect(c, select.value !== '');
      });
      return fieldShell(c, scope, id, select);
    },

    RadioButtonsGroup(c, scope) {
      register(c, scope);
      const id = nextId('f');
      const value = scope.session.cur.form[c.name];
      const on = enabled(c, scope);
      const group = el('div', { class: 'choices', role: 'radiogroup', id, 'data-testid': `field-${c.name}`, 'aria-label': display(resolve(c.label, scope.ctx)) || c.name },
        options(c, scope.ctx).map((o) => {
          const input = el('input', { type: 'radio', name: `${id}-${c.name}`, value: o.id, checked: o.id === value, disabled: !on || !o.enabled, 'data-testid': `option-${c.name}-${o.id}` });
          input.addEventListener('change', () => { setValue(scope, c.name, o.id); onSelect(c, true); });
          return el('label', { class: 'choice' }, input, el('span', {}, o.title, o.description ? el('small', { text: o.description }) : null));
        }));
      return fieldShell(c, { ...scope }, id, group);
    },

    CheckboxGroup(c, scope) {
      register(c, scope, { minItems: c['min-selected-items'], maxItems: c['max-selected-items'] });
      const id = nextId('f');
      const chosen = Array.isArray(scope.session.cur.form[c.name]) ? scope.session.cur.form[c.name] : [];
      const on = enabled(c, scope);
      const group = el('div', { class: 'choices', role: 'group', id, 'data-testid': `field-${c.name}`, 'aria-label': display(resolve(c.label, scope.ctx)) || c.name },
        options(c, scope.ctx).map((o) => {
          const input = el('input', { type: 'checkbox', value: o.id, checked: chosen.includes(o.id), disabled: !on || !o.enabled, 'data-testid': `option-${c.name}-${o.id}` });
          input.addEventListener('change', () => {
            const now = (Array.isArray(scope.session.cur.form[c.name]) ? scope.session.cur.form[c.name] : []).filter((x) => x !== o.id);
            if (input.checked) now.push(o.id);
            setValue(scope, c.name, now);
            onSelect(c, input.checked);
          });
          return el('label', { class: 'choice' }, input, el('span', {}, o.title, o.description ? el('small', { text: o.description }) : null));
        }));
      return fieldShell(c, scope, id, group);
    },

    DatePicker(c, scope) {
      register(c, scope);
      const id = nextId('f');
      const { ctx, session } = scope;
      const input = el('input', {
        id, type: 'date', name: c.name, 'data-testid': `field-${c.name}`,
        value: isoDate(session.cur.form[c.name]) || undefined,
        min: isoDate(resolve(c['min-date'], ctx)) || undefined,
        max: isoDate(resolve(c['max-date'], ctx)) || undefined,
        disabled: !enabled(c, scope),
        required: flag(c.required, ctx, false),
      });
      const unavailable = resolve(c['unavailable-dates'], ctx);
      const blocked = new Set(Array.isArray(unavailable) ? unavailable.map(isoDate) : []);
      input.addEventListener('change', () => {
        if (blocked.has(input.value)) {
          session.cur.errors[c.name] = 'This date is not available';
          setValue(scope, c.name, undefined);
          render();
          return;
        }
        setValue(scope, c.name, input.value ? dateValue(input.value, session.version) : undefined);
        onSelect(c, Boolean(input.value));
      });
      return fieldShell(c, scope, id, input);
    },

    OptIn(c, scope) {
      register(c, scope);
      const id = nextId('f');
      const input = el('input', { id, type: 'checkbox', name: c.name, 'data-testid': `field-${c.name}`, checked: scope.session.cur.form[c.name] === true, disabled: !enabled(c, scope) });
      input.addEventListener('change', () => { setValue(scope, c.name, input.checked); onSelect(c, input.checked); });
      const more = c['on-click-action'] ? el('button', { type: 'button', class: 'link', 'data-testid': `read-more-${c.name}`, text: 'Read more', onclick: () => runAction(c['on-click-action'], false) }) : null;
      const error = scope.session.cur.errors[c.name] || scope.errorMessages[c.name];
      return el('div', { class: error ? 'field optin invalid' : 'field optin', 'data-field': c.name },
        el('label', { class: 'choice', for: id }, input, el('span', { text: display(resolve(c.label, scope.ctx)) })), more,
        error ? el('p', { class: 'error', 'data-testid': `error-${c.name}`, role: 'alert', text: error }) : null);
    },

    EmbeddedLink(c, scope) {
      return el('button', { type: 'button', class: 'link embedded', text: display(resolve(c.text, scope.ctx)), disabled: scope.session.busy, onclick: () => runAction(c['on-click-action'], false) });
    },

    Image(c, { ctx }) {
      const src = imageSource(resolve(c.src, ctx));
      if (!src) return problem('Image', 'src is not base64 image data');
      const img = el('img', { src, alt: display(resolve(c['alt-text'], ctx)) || '', class: 'image' });
      if (Number.isFinite(c.width)) img.style.width = `${Math.min(c.width, 320)}px`;
      if (Number.isFinite(c.height)) img.style.height = `${c.height}px`;
      img.style.objectFit = c['scale-type'] === 'cover' ? 'cover' : 'contain';
      return img;
    },

    If(c, scope) {
      const chosen = flag(c.condition, scope.ctx, false) ? c.then : c.else;
      return el('div', { class: 'if' }, renderChildren(chosen, scope));
    },

    Switch(c, scope) {
      const value = display(resolve(c.value, scope.ctx));
      const cases = c.cases && typeof c.cases === 'object' ? c.cases : {};
      return el('div', { class: 'switch' }, renderChildren(Object.prototype.hasOwnProperty.call(cases, value) ? cases[value] : [], scope));
    },

    Footer(c, scope) {
      const { ctx, session } = scope;
      const caption = (key) => (c[key] !== undefined ? el('span', { class: key, text: display(resolve(c[key], ctx)) }) : null);
      const button = el('button', {
        type: 'button', class: 'footer-button', 'data-testid': 'footer',
        disabled: !enabled(c, scope),
        text: session.busy ? '…' : display(resolve(c.label, ctx)),
        onclick: () => runAction(c['on-click-action'], true),
      });
      scope.footer.replaceChildren(el('div', { class: 'captions' }, caption('left-caption'), caption('center-caption'), caption('right-caption')), button);
      return null;
    },
  };

  function renderDone(session) {
    const params = session.done.params;
    const list = el('dl', { 'data-testid': 'complete-params' });
    if (params && typeof params === 'object') {
      for (const [key, value] of Object.entries(params)) {
        list.append(el('dt', { text: key }), el('dd', { 'data-param': key, text: display(value) }));
      }
    }
    return el('div', { class: 'complete', 'data-testid': 'complete', 'data-via': session.done.via },
      el('div', { class: 'tick', 'aria-hidden': 'true', text: '✓' }),
      el('h3', { text: 'Flow completed' }),
      el('p', { class: 'muted', text: session.done.via === 'SUCCESS'
        ? 'The endpoint answered SUCCESS; WhatsApp sends these params to the business in the chat:'
        : 'complete action; WhatsApp sends this payload to the business in the chat:' }),
      list,
      el('pre', { 'data-testid': 'complete-json', text: pretty(params) }));
  }

  // ---------------------------------------------------------------- flow list

  async function loadRoutes() {
    const { status, json } = await api('GET', 'api/routes');
    const box = $('routes');
    box.replaceChildren();
    if (status !== 200 || !json || !Array.isArray(json.routes)) {
      box.append(el('p', { class: 'error', 'data-testid': 'routes-error', text: `Cannot list the routes: ${errorText(json, status)}` }));
      return;
    }
    state.routes = json.routes;
    $('file-route').replaceChildren(...json.routes.map((r) => el('option', { value: r.route, text: r.route })));
    if (!json.routes.length) box.append(el('p', { class: 'muted', text: 'The gateway has no routes.' }));
    for (const route of json.routes) {
      const flows = Array.isArray(route.flows) ? route.flows : [];
      box.append(el('section', { class: 'route', 'data-testid': 'route', 'data-route': route.route },
        el('h3', {}, el('code', { text: route.route }), el('span', { class: 'badge', text: route.mode })),
        flows.length ? el('ul', {}, flows.map((f) => el('li', {},
          el('button', {
            type: 'button', class: 'flow', 'data-testid': 'flow', 'data-route': route.route, 'data-flow': f.name,
            'aria-label': `Start ${f.name} on ${route.route}`,
            onclick: () => pick(route, f),
          }, f.name),
          f.is_default ? el('span', { class: 'badge', text: 'default' }) : null,
          f.signed_tokens ? el('span', { class: 'badge warn', text: 'signed tokens' }) : null))) : null,
        route.flows_error ? el('p', { class: 'error', 'data-testid': 'flows-error', text: `Cannot list flows: ${errorText({ error: route.flows_error })}. Load a Flow JSON file below.` }) : null));
    }
    // A link to `#route=/flow-endpoint&flow=signup` starts that flow at once.
    const wanted = new URLSearchParams(location.hash.slice(1));
    const name = wanted.get('flow');
    if (name) {
      const route = json.routes.find((r) => (!wanted.get('route') || r.route === wanted.get('route')) &&
        Array.isArray(r.flows) && r.flows.some((f) => f.name === name));
      if (route) pick(route, route.flows.find((f) => f.name === name));
    }
  }

  function markSelected() {
    for (const button of document.querySelectorAll('button.flow')) {
      const on = state.selected && button.dataset.route === state.selected.route && button.dataset.flow === state.selected.flow;
      button.classList.toggle('selected', Boolean(on));
      button.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
  }

  async function pick(route, flow) {
    state.selected = { route: route.route, flow: flow.name, signed: Boolean(flow.signed_tokens) };
    markSelected();
    history.replaceState(null, '', `#${new URLSearchParams({ route: route.route, flow: flow.name })}`);
    $('file-route').value = route.route;
    $('file-flow').value = flow.name;
    const token = $('token');
    const hint = $('token-hint');
    const { status, json } = await api('GET', `api/flow?route=${encodeURIComponent(route.route)}&flow=${encodeURIComponent(flow.name)}`);
    if (status !== 200 || !json || !json.flow_json) {
      logEntry({ kind: 'flow', title: flow.name, status, answer: json, note: 'Cannot fetch the Flow JSON: load a Flow JSON file instead.' });
      state.session = null;
      render();
      $('banner').hidden = false;
      $('banner').textContent = `Cannot fetch the Flow JSON of ${flow.name}: ${errorText(json, status)}`;
      return;
    }
    state.selected.flowJson = json.flow_json;
    const hasEndpoint = Boolean(json.flow_json.data_api_version);
    if (state.selected.signed && hasEndpoint) {
      token.value = '';
      hint.textContent = 'This flow takes signed tokens: paste a token issued for it, then press Restart.';
      state.session = null;
      render();
      $('restart').disabled = false;
      token.focus();
      return;
    }
    token.value = randomToken();
    state.tokenTyped = false;
    hint.textContent = 'A fresh random token; edit it and press Restart to reuse one.';
    await start({ route: route.route, flow: flow.name, flowJson: json.flow_json, uploaded: false, hasEndpoint, token: token.value });
  }

  async function restart() {
    const token = $('token').value.trim();
    const base = state.session || state.selected;
    if (!base || !base.flowJson) return;
    if (!token) {
      $('token-hint').textContent = 'A flow token is needed.';
      return;
    }
    const session = state.session;
    await start({
      route: base.route, flow: base.flow, flowJson: base.flowJson,
      uploaded: session ? session.uploaded : false,
      hasEndpoint: session ? session.hasEndpoint : Boolean(base.flowJson.data_api_version),
      token,
    });
  }

  async function loadFile(file) {
    let flowJson;
    try {
      flowJson = JSON.parse(await file.text());
    } catch (error) {
      logEntry({ kind: 'check', title: file.name, violations: [{ message: `Not JSON: ${error.message}`, path: '' }] });
      return;
    }
    const { status, json } = await api('POST', 'api/check', { flow_json: flowJson });
    const ok = status === 200 && json && typeof json === 'object';
    logEntry({
      kind: 'check', title: file.name, status,
      answer: ok ? { ok: json.ok, flow: json.flow } : json,
      violations: ok ? json.violations : undefined,
      note: ok ? (json.ok ? 'The Flow JSON is valid.' : 'The Flow JSON has violations.') : 'The check failed.',
    });
    if (!flowJson || typeof flowJson !== 'object' || !Array.isArray(flowJson.screens)) return;
    const route = $('file-route').value;
    if (!route) {
      logEntry({ kind: 'check', title: file.name, note: 'The gateway has no route to run this file on.' });
      return;
    }
    const target = { route, flow: $('file-flow').value.trim() };
    const hasEndpoint = ok && json.flow && typeof json.flow.has_endpoint === 'boolean' ? json.flow.has_endpoint : Boolean(flowJson.data_api_version);
    // A fresh token for each run, unless the user typed one (a signed token, say): the
    // one the page picked for the last run may be completed already.
    const typed = state.tokenTyped ? $('token').value.trim() : '';
    const token = typed || randomToken();
    $('token').value = token;
    state.tokenTyped = Boolean(typed);
    await start({ route: target.route, flow: target.flow, flowJson, uploaded: true, hasEndpoint, token });
  }

  function init() {
    $('back').addEventListener('click', goBack);
    $('close').addEventListener('click', () => {
      state.session = null;
      $('close').disabled = true;
      render();
    });
    $('restart').addEventListener('click', restart);
    $('token').addEventListener('input', () => { state.tokenTyped = true; });
    $('clear-log').addEventListener('click', () => $('log').replaceChildren());
    $('file').addEventListener('change', (event) => {
      const file = event.target.files && event.target.files[0];
      if (file) loadFile(file);
      event.target.value = '';
    });
    render();
    loadRoutes();
  }

  // Exposed for the browser tests' diagnostics only.
  window.flowgatePreview = { state, evaluate: (src, data, form) => evaluate(src, { data: data || {}, form: form || {}, screen: () => null }) };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();

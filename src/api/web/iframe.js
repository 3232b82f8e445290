// Strongroom's hosted card form, for the Commerce Web SDK (3.11). One script, two roles:
//  - a field page (`?field=cardNumber&origin=…`): one input (or, for `card`, all three), reporting only
//    its validation state to the parent page, and its value only to the coordinator frame of the same
//    page on this server's own origin;
//  - the coordinator page (`?type=coordinator&sessionId=…&apiBaseUrl=…&origin=…`): reads the session,
//    and on `card:tokenize`, `card:process` or `card:refresh_security_code` gathers the values from its
//    sibling field frames and sends them straight to this server. The parent only ever receives states,
//    token ids and error messages (which never repeat a value).
(function () {
  'use strict';

  var params = new URLSearchParams(location.search);
  var parentOrigin = params.get('origin') || '';
  var OWN = location.origin;

  // ---- card rules -------------------------------------------------------------------------------

  function digits(s) { return String(s || '').replace(/\D/g, ''); }

  function brandOf(d) {
    var p2 = +d.slice(0, 2), p3 = +d.slice(0, 3), p4 = +d.slice(0, 4);
    if (/^4/.test(d)) return 'visa';
    if ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) return 'mastercard';
    if (p2 === 34 || p2 === 37) return 'american-express';
    if (p4 === 6011 || (p3 >= 644 && p3 <= 649) || p2 === 65) return 'discover';
    if ((p3 >= 300 && p3 <= 305) || p2 === 36 || p2 === 38 || p2 === 39) return 'diners-club';
    if (p4 >= 3528 && p4 <= 3589) return 'jcb';
    if (p2 === 62 || p2 === 81) return 'unionpay';
    return undefined;
  }

  function lengthsOf(brand) {
    switch (brand) {
      case 'american-express': return [15];
      case 'diners-club': return [14, 16, 19];
      case 'visa': return [13, 16, 19];
      case 'unionpay': return [16, 17, 18, 19];
      default: return [16];
    }
  }

  function luhn(d) {
    var sum = 0, alt = false;
    for (var i = d.length - 1; i >= 0; i--) {
      var n = d.charCodeAt(i) - 48;
      if (alt) { n *= 2; if (n > 9) n -= 9; }
      sum += n; alt = !alt;
    }
    return d.length > 0 && sum % 10 === 0;
  }

  function groupNumber(d, brand) {
    var groups = brand === 'american-express' ? [4, 6, 5] : [4, 4, 4, 4, 3];
    var out = [], at = 0;
    for (var i = 0; i < groups.length && at < d.length; i++) { out.push(d.slice(at, at + groups[i])); at += groups[i]; }
    return out.join(' ');
  }

  function parseExpiry(text) {
    var d = digits(text);
    return { month: d.length >= 2 ? +d.slice(0, 2) : null, year: d.length >= 4 ? 2000 + +d.slice(2, 4) : null, complete: d.length >= 4, empty: d.length === 0 };
  }

  function expiryValid(month, year) {
    if (!month || month < 1 || month > 12 || !year) return false;
    var now = new Date();
    var y = now.getFullYear(), m = now.getMonth() + 1;
    return year > y || (year === y && month >= m);
  }

  // ---- field pages ------------------------------------------------------------------------------

  var SAFE_PROPS = ['backgroundColor', 'color', 'fontFamily', 'fontSize', 'fontSmooth', 'fontStyle', 'fontVariant',
    'fontWeight', 'lineHeight', 'letterSpacing', 'textAlign', 'padding', 'textDecoration', 'textShadow',
    'textTransform', 'height'];
  var VARIANTS = { base: '', complete: '.complete', invalid: '.invalid', empty: '.empty' };
  var PSEUDOS = [':hover', ':focus', ':read-only', '::placeholder', '::selection', ':disabled'];

  function dash(p) { return p.replace(/[A-Z]/g, function (c) { return '-' + c.toLowerCase(); }); }

  function declarations(style) {
    var out = [];
    SAFE_PROPS.forEach(function (p) {
      var v = style && style[p];
      if (typeof v === 'number') v = String(v);
      // A value may not open a URL, a block or another declaration.
      if (typeof v === 'string' && v.length < 200 && !/[;{}<>\\]|url\(|expression\(/i.test(v)) out.push(dash(p) + ':' + v);
    });
    return out.join(';');
  }

  // Rules go in through the CSS object model: the policy allows no inline style sheet.
  function applyStyle(style) {
    var sheet = document.styleSheets[0];
    if (!sheet || !style) return;
    Object.keys(VARIANTS).forEach(function (variant) {
      var s = style[variant];
      if (!s) return;
      var sel = 'input' + VARIANTS[variant];
      var base = declarations(s);
      try { if (base) sheet.insertRule(sel + '{' + base + '}', sheet.cssRules.length); } catch (e) { /* ignored */ }
      PSEUDOS.forEach(function (pseudo) {
        var d = declarations(s[pseudo]);
        try { if (d) sheet.insertRule(sel + pseudo + '{' + d + '}', sheet.cssRules.length); } catch (e) { /* ignored */ }
      });
    });
  }

  function Field(type, input, form) {
    this.type = type;
    this.input = input;
    this.form = form;
    this.fixed = false; // a masked, read-only value given by a refresh session
    this.cardType = undefined;
  }

  Field.prototype.value = function () { return this.input.value; };

  Field.prototype.state = function (blurred) {
    var raw = this.input.value, s = { empty: raw.trim() === '', complete: false, valid: false };
    if (this.fixed) return { empty: false, complete: true, valid: true };
    switch (this.type) {
      case 'cardNumber': {
        var d = digits(raw), brand = brandOf(d), lengths = lengthsOf(brand), max = Math.max.apply(null, lengths);
        s.cardBrand = brand;
        // A number is complete at its scheme's usual length, or at another allowed length once it
        // passes the Luhn check (a longer Visa, say).
        var usual = brand === 'american-express' ? 15 : brand === 'diners-club' ? 14 : 16;
        s.complete = d.length >= max || d.length === usual || (lengths.indexOf(d.length) >= 0 && luhn(d));
        if (s.complete && !luhn(d)) { s.error = 'Card number is invalid'; s.errorCode = 'LUHN_CHECK_FAILED'; }
        else if (s.complete && this.form.schemes && brand && this.form.schemes.indexOf(brand) < 0) { s.error = 'Card scheme is not supported'; s.errorCode = 'SCHEME_NOT_SUPPORTED'; }
        else s.valid = s.complete;
        break;
      }
      case 'cardExpirationDate': {
        var e = parseExpiry(raw);
        s.complete = e.complete;
        s.valid = e.complete && expiryValid(e.month, e.year);
        if (e.complete && !s.valid) { s.error = 'Expiry date is invalid'; s.errorCode = 'INVALID_EXPIRY_DATE'; }
        break;
      }
      case 'cardExpirationMonth': {
        var m = digits(raw);
        s.complete = m.length === 2;
        s.valid = s.complete && +m >= 1 && +m <= 12;
        if (s.complete && !s.valid) { s.error = 'Expiry month is invalid'; s.errorCode = 'INVALID_EXPIRY_DATE'; }
        break;
      }
      case 'cardExpirationYear': {
        var y = digits(raw);
        s.complete = y.length === 2;
        s.valid = s.complete && 2000 + +y >= new Date().getFullYear();
        if (s.complete && !s.valid) { s.error = 'Expiry year is invalid'; s.errorCode = 'INVALID_EXPIRY_DATE'; }
        break;
      }
      case 'cardVerificationCode': {
        var c = digits(raw), need = this.cardType === 'american-express' ? 4 : 3;
        s.complete = c.length >= need;
        s.valid = c.length === need;
        break;
      }
      default:
        s.complete = !s.empty;
        s.valid = true;
    }
    if (blurred && !s.empty && !s.complete && !s.error) { s.error = 'Card data is not complete'; s.errorCode = 'NOT_COMPLETE'; }
    return s;
  };

  Field.prototype.format = function () {
    var raw = this.input.value, d = digits(raw);
    if (this.fixed) return;
    switch (this.type) {
      case 'cardNumber': this.input.value = groupNumber(d.slice(0, 19), brandOf(d)); break;
      case 'cardExpirationDate':
        d = d.slice(0, 4);
        if (d.length === 1 && +d > 1) d = '0' + d;
        this.input.value = d.length > 2 ? d.slice(0, 2) + ' / ' + d.slice(2) : d;
        break;
      case 'cardExpirationMonth': case 'cardExpirationYear': this.input.value = d.slice(0, 2); break;
      case 'cardVerificationCode': this.input.value = d.slice(0, 4); break;
      default: break;
    }
  };

  var FIELD_ATTRS = {
    cardNumber: { cls: 'number', placeholder: '1234 1234 1234 1234', ac: 'cc-number', label: 'Card number' },
    cardExpirationDate: { cls: 'expiry', placeholder: 'MM / YY', ac: 'cc-exp', label: 'Expiry date' },
    cardExpirationMonth: { cls: 'expiry', placeholder: 'MM', ac: 'cc-exp-month', label: 'Expiry month' },
    cardExpirationYear: { cls: 'expiry', placeholder: 'YY', ac: 'cc-exp-year', label: 'Expiry year' },
    cardVerificationCode: { cls: 'cvc', placeholder: 'CVC', ac: 'cc-csc', label: 'Security code' },
    text: { cls: 'text', placeholder: '', ac: 'off', label: 'Text' }
  };

  function makeInput(type) {
    var a = FIELD_ATTRS[type];
    var input = document.createElement('input');
    input.className = a.cls + ' empty';
    input.placeholder = a.placeholder;
    input.setAttribute('autocomplete', a.ac);
    input.setAttribute('aria-label', a.label);
    input.setAttribute('spellcheck', 'false');
    if (type !== 'text') input.setAttribute('inputmode', 'numeric');
    return input;
  }

  function fieldPage(type) {
    var root = document.getElementById('root');
    var id = type + '-' + Math.random().toString(36).slice(2, 10);
    var key = id;
    var form = { schemes: null, cvcOnly: false };
    var types = type === 'card' ? ['cardNumber', 'cardExpirationDate', 'cardVerificationCode'] : [type];
    if (!FIELD_ATTRS[types[0]]) return;
    var row = document.createElement('div');
    row.className = 'row';
    root.appendChild(row);
    var fields = types.map(function (t) {
      var f = new Field(t, makeInput(t), form);
      row.appendChild(f.input);
      return f;
    });
    var byType = {};
    fields.forEach(function (f) { byType[f.type] = f; });

    function toParent(eventType, data) {
      var msg = { type: eventType, id: id, element: type };
      if (data !== undefined) msg.data = data;
      window.parent.postMessage(msg, parentOrigin);
    }

    function combined(blurred) {
      var states = fields.map(function (f) { return f.state(blurred); });
      var s = { empty: true, complete: true, valid: true };
      states.forEach(function (x) {
        s.empty = s.empty && x.empty; s.complete = s.complete && x.complete; s.valid = s.valid && x.valid;
        if (!s.error && x.error) { s.error = x.error; s.errorCode = x.errorCode; }
        if (x.cardBrand) s.cardBrand = x.cardBrand;
      });
      if (form.cvcOnly && byType.cardVerificationCode && type === 'card') {
        var c = byType.cardVerificationCode.state(blurred);
        return { empty: c.empty, complete: c.complete, valid: c.valid, error: c.error, errorCode: c.errorCode, cardBrand: s.cardBrand };
      }
      return s;
    }

    function report(blurred) {
      var s = combined(blurred);
      fields.forEach(function (f) {
        var fs = f.state(blurred);
        f.input.classList.toggle('empty', fs.empty);
        f.input.classList.toggle('complete', fs.complete && fs.valid);
        f.input.classList.toggle('invalid', !!fs.error);
      });
      if (byType.cardVerificationCode && byType.cardNumber && s.cardBrand) byType.cardVerificationCode.cardType = s.cardBrand;
      var data = { empty: s.empty, complete: s.complete, valid: s.valid };
      if (s.error) { data.error = s.error; data.errorCode = s.errorCode; }
      if (type === 'cardNumber' || type === 'card') data.cardBrand = s.cardBrand;
      toParent('change', data);
    }

    fields.forEach(function (f, i) {
      f.input.addEventListener('input', function () {
        f.format();
        report(false);
        // In the combined form, a complete field moves the caret on.
        var st = f.state(false);
        if (type === 'card' && st.complete && st.valid && fields[i + 1] && f.type !== 'cardVerificationCode') fields[i + 1].input.focus();
      });
      f.input.addEventListener('focus', function () { toParent('focus'); });
      f.input.addEventListener('blur', function () { toParent('blur'); report(true); });
      f.input.addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === 'Escape') toParent('keydown', { key: e.key, altKey: e.altKey, ctrlKey: e.ctrlKey, shiftKey: e.shiftKey, metaKey: e.metaKey });
      });
    });

    function setValue(f, value) {
      if (value === undefined || value === null) return;
      f.input.value = String(value);
    }

    function update(opts) {
      opts = opts || {};
      if (opts.style) applyStyle(opts.style);
      if (Array.isArray(opts.schemes)) form.schemes = opts.schemes;
      if (opts.cvcOnly) form.cvcOnly = true;
      if (opts.cardType && byType.cardVerificationCode) byType.cardVerificationCode.cardType = opts.cardType;
      fields.forEach(function (f) {
        if (typeof opts.disabled === 'boolean') f.input.disabled = opts.disabled && !(form.cvcOnly && f.type === 'cardVerificationCode');
        if (typeof opts.placeholder === 'string' && fields.length === 1) f.input.placeholder = opts.placeholder;
        if (typeof opts.ariaLabel === 'string' && fields.length === 1) f.input.setAttribute('aria-label', opts.ariaLabel);
        if (opts.autocomplete === 'off') f.input.setAttribute('autocomplete', 'off');
      });
      if (opts.value !== undefined && opts.value !== null) {
        if (type === 'card' && typeof opts.value === 'object') {
          setValue(byType.cardNumber, opts.value.cardNumber);
          setValue(byType.cardExpirationDate, opts.value.cardExpirationDate);
          if (form.cvcOnly) { byType.cardNumber.fixed = true; byType.cardExpirationDate.fixed = true; }
        } else if (fields.length === 1) {
          setValue(fields[0], opts.value);
          // A prefilled number or expiry is the masked card of a refresh session: shown, never sent.
          if (fields[0].type !== 'cardVerificationCode' && fields[0].type !== 'text') fields[0].fixed = true;
        }
        fields.forEach(function (f) {
          if (f.fixed) { f.input.readOnly = true; f.input.tabIndex = -1; }
        });
        var masked = byType.cardNumber && byType.cardNumber.fixed ? digits(byType.cardNumber.input.value) : '';
        if (masked && byType.cardVerificationCode) byType.cardVerificationCode.cardType = brandOf(masked);
      }
      if (opts.height && fields.length) fields.forEach(function (f) { f.input.style.height = /^\d+$/.test(opts.height) ? opts.height + 'px' : ''; });
      report(false);
    }

    window.addEventListener('message', function (event) {
      var msg = event.data || {};
      if (event.source === window.parent && event.origin === parentOrigin) {
        switch (msg.type) {
          case 'update': update(msg.data); break;
          case 'focus': (fields.filter(function (f) { return !f.fixed; })[0] || fields[0]).input.focus(); break;
          case 'blur': if (document.activeElement) document.activeElement.blur(); break;
          case 'clear':
            fields.forEach(function (f) { if (!f.fixed) f.input.value = ''; });
            report(false);
            break;
          default: break;
        }
        return;
      }
      // The coordinator of the same page (a sibling frame on this origin) asks for the values.
      if (event.origin === OWN && msg.sr === 'collect' && event.source && isSibling(event.source)) {
        var values = {};
        fields.forEach(function (f) { if (!f.fixed) values[f.type] = f.value(); });
        event.source.postMessage({ sr: 'values', nonce: msg.nonce, element: type, key: key, values: values }, OWN);
      }
    });

    toParent('ready', { key: key });
  }

  function isSibling(win) {
    try { return win.parent === window.parent; } catch (e) { return false; }
  }

  // ---- coordinator page -------------------------------------------------------------------------

  function coordinatorPage() {
    var sessionId = params.get('sessionId') || '';
    var api = OWN; // the card goes to this server only, whatever the parent names (connect-src 'self')
    var disposed = false;

    function toParent(msg) { if (!disposed) window.parent.postMessage(msg, parentOrigin); }

    function call(method, path, body) {
      var init = { method: method, headers: {}, credentials: 'omit', cache: 'no-store' };
      if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
      return fetch(api + path, init).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (json) {
          if (!r.ok) {
            var err = new Error(describe(json, r.status));
            err.body = { classifier: json.classifier, code: json.code || r.status, message: json.message };
            throw err;
          }
          return json;
        });
      });
    }

    function describe(json, status) {
      var m = (json && json.message) || ('Request failed with status ' + status);
      if (json && Array.isArray(json.validation_errors) && json.validation_errors.length) {
        m += ': ' + json.validation_errors.map(function (e) { return e.path + ' ' + e.message; }).join('; ');
      }
      return m;
    }

    var sessionPath = '/sessions/' + encodeURIComponent(sessionId);

    // Gathers the values of the field frames of the same page, waiting briefly for their answers.
    function collect() {
      var nonce = Math.random().toString(36).slice(2);
      var frames = window.parent.frames;
      var answers = [];
      return new Promise(function (resolve) {
        function onMessage(event) {
          var msg = event.data || {};
          if (event.origin === OWN && msg.sr === 'values' && msg.nonce === nonce && isSibling(event.source)) answers.push(msg);
        }
        window.addEventListener('message', onMessage);
        for (var i = 0; i < frames.length; i++) {
          if (frames[i] === window) continue;
          try { frames[i].postMessage({ sr: 'collect', nonce: nonce }, OWN); } catch (e) { /* another origin */ }
        }
        setTimeout(function () { window.removeEventListener('message', onMessage); resolve(answers); }, 150);
      });
    }

    function cardFrom(answers) {
      var v = {}, texts = {};
      answers.forEach(function (a) {
        if (a.element === 'text') { texts[a.key] = a.values.text; return; }
        Object.keys(a.values).forEach(function (k) { if (v[k] === undefined) v[k] = a.values[k]; });
      });
      var card = {};
      if (v.cardNumber !== undefined) card.account_number = digits(v.cardNumber);
      if (v.cardExpirationDate !== undefined) {
        var e = parseExpiry(v.cardExpirationDate);
        card.expiry_month = e.month; card.expiry_year = e.year;
      }
      if (v.cardExpirationMonth !== undefined) card.expiry_month = +digits(v.cardExpirationMonth) || null;
      if (v.cardExpirationYear !== undefined) card.expiry_year = digits(v.cardExpirationYear) ? 2000 + +digits(v.cardExpirationYear) : null;
      if (v.cardVerificationCode !== undefined) card.security_code = digits(v.cardVerificationCode);
      return { card: card, texts: texts };
    }

    // The SDK's additional data, with `{key}` references to text fields replaced by their values.
    function resolveAdditional(data, texts) {
      var out = {};
      function val(x) { return x && typeof x === 'object' && x.key ? texts[x.key] : x; }
      Object.keys(data || {}).forEach(function (k) {
        var x = data[k];
        if (k === 'billing_address' && x && typeof x === 'object') {
          out[k] = {};
          Object.keys(x).forEach(function (b) { var r = val(x[b]); if (r !== undefined && r !== '') out[k][b] = r; });
        } else {
          var r = val(x);
          if (r !== undefined && r !== '') out[k] = r;
        }
      });
      return out;
    }

    function tokenize(additionalData) {
      return collect().then(function (answers) {
        var got = cardFrom(answers);
        if (!got.card.account_number) throw new Error('The card form is not mounted');
        var result = got.card;
        var additional = resolveAdditional(additionalData, got.texts);
        if (typeof additional.cardholder_name === 'string') result.cardholder_name = additional.cardholder_name;
        result.additional_data = additional;
        return call('POST', sessionPath + '/complete-action', { action: 'tokenize_card', result: result });
      });
    }

    function refresh() {
      return collect().then(function (answers) {
        var code = cardFrom(answers).card.security_code;
        if (!code) throw new Error('The security code field is not mounted');
        return call('POST', sessionPath + '/complete-action', { action: 'refresh_security_code', result: { security_code: code } });
      });
    }

    function finish(state) {
      toParent({ type: 'coordinator:session_state_change', state: state });
    }

    function completed(state) { return { status: state.status, data: state.data || {} }; }

    window.addEventListener('message', function (event) {
      if (event.source !== window.parent || event.origin !== parentOrigin || disposed) return;
      var msg = event.data || {};
      switch (msg.type) {
        case 'card:tokenize':
          tokenize(msg.additionalData).then(function (state) {
            toParent({ type: 'card:tokenize:response', success: true, result: { token_id: state.data.token_id } });
            finish(state);
          }, function (err) {
            toParent({ type: 'card:tokenize:response', success: false, result: null, error: err.message });
          });
          break;
        case 'card:process':
          tokenize(msg.additionalData).then(function (state) {
            toParent({ type: 'card:process:response', success: true, result: completed(state) });
            finish(state);
          }, function (err) {
            toParent({ type: 'card:process:response', success: false, result: null, error: err.message });
          });
          break;
        case 'card:refresh_security_code':
          refresh().then(function (state) {
            toParent({ type: 'card:refresh_security_code:response', success: true, result: completed(state) });
            finish(state);
          }, function (err) {
            toParent({ type: 'card:refresh_security_code:response', success: false, result: null, error: err.message });
          });
          break;
        case 'coordinator:dispose':
          disposed = true;
          break;
        default:
          break;
      }
    });

    call('GET', sessionPath).then(function (state) {
      toParent({ type: 'coordinator:session_state_change', state: state });
      toParent({ type: 'coordinator:ready' });
    }, function (err) {
      toParent({ type: 'coordinator:error', error: err.body || { message: err.message } });
    });
  }

  if (params.get('type') === 'coordinator') coordinatorPage();
  else fieldPage(params.get('field') || '');
})();

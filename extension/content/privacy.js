// Privacy at the edge: decides, in the page, what of an element may leave it.
//
// Three levels, strictest first:
//   blocked  – an element (or one inside an element) with a block class: nothing of its text or
//              value is sent, it is left out of DOM snapshots, and it is painted over in screenshots.
//   password – its value never leaves the page, not even masked; its keystrokes are not counted.
//   masked   – card, email, phone, address and one-time-code fields (by type, autocomplete,
//              name/id/label), elements with a mask class or matching a configured selector,
//              and any value that looks like a card number or an email address: the value is
//              replaced by asterisks and the event says `masked: true`.
// Every element that is blocked, a password or masked is also flagged `sensitive: true`, which
// is what the server's screenshot painter looks for (actors/privacy/redact.py `_is_sensitive`).
"use strict";

(() => {
  const TM = (globalThis.__tracemill = globalThis.__tracemill || {});

  // Autocomplete tokens (WHATWG) whose values are personal data of the kinds we mask.
  const MASKED_AUTOCOMPLETE = /^(cc-|email$|tel|street-address$|address-|postal-code$|one-time-code$|bday|country|new-password$|current-password$)/;
  const MASKED_TYPES = new Set(["email", "tel", "password"]);
  // Fields that carry such data but are not marked up as such (many real shops).
  const MASKED_NAMES = /card|cc-?(num|exp|csc|cvc)|cvv|cvc|csc|expir|iban|ssn|otp|one.?time|passcode|e-?mail|phone|mobile|tel\b|street|address|postcode|postal|zip/i;
  const EMAIL = /[^@\s]+@[^@\s]+\.[^@\s]+/;

  TM.privacy = {
    // Defaults; the options page can add classes and selectors (chrome.storage `config.masking`).
    rules: { maskClasses: ["tm-mask", "rr-mask"], blockClasses: ["tm-block", "rr-block"],
             maskSelectors: [], maskAllInputs: false },

    configure(masking) {
      if (!masking) return;
      const r = this.rules;
      r.maskClasses = unique(["tm-mask", "rr-mask", ...(masking.maskClasses || [])]);
      r.blockClasses = unique(["tm-block", "rr-block", ...(masking.blockClasses || [])]);
      r.maskSelectors = (masking.maskSelectors || []).filter(validSelector);
      r.maskAllInputs = Boolean(masking.maskAllInputs);
    },

    isPassword(el) {
      return el instanceof HTMLInputElement && (el.type === "password" || /password/.test(autocomplete(el)));
    },

    isBlocked(el) {
      return Boolean(el && el.closest && el.closest(this.rules.blockClasses.map((c) => "." + CSS.escape(c)).join(",")));
    },

    // True when the element's value (or text) must be masked, whatever the value is.
    isMasked(el) {
      if (!el || !el.closest) return false;
      if (this.isBlocked(el) || this.isPassword(el)) return true;
      if (el.closest(this.rules.maskClasses.map((c) => "." + CSS.escape(c)).join(","))) return true;
      if (this.rules.maskSelectors.some((s) => el.closest(s))) return true;
      if (!isField(el)) return false;
      if (this.rules.maskAllInputs && !isButtonLike(el)) return true;
      if (el instanceof HTMLInputElement && MASKED_TYPES.has(el.type)) return true;
      if (MASKED_AUTOCOMPLETE.test(autocomplete(el))) return true;
      const names = [el.name, el.id, el.getAttribute("aria-label"), el.placeholder, labelText(el)].join(" ");
      return MASKED_NAMES.test(names);
    },

    // A value typed by the user as it may leave the page: null for passwords, asterisks when masked.
    safeValue(el, value) {
      if (this.isPassword(el) || this.isBlocked(el)) return { value: null, masked: true };
      if (this.isMasked(el) || looksSensitive(value)) return { value: mask(value), masked: true };
      return { value, masked: false };
    },

    // Text shown by an element, masked when the element (or an ancestor) says so.
    safeText(el, text) {
      if (this.isBlocked(el)) return { text: null, masked: true };
      if (el.closest && el.closest(this.rules.maskClasses.map((c) => "." + CSS.escape(c)).join(","))) {
        return { text: mask(text), masked: true };
      }
      if (looksSensitive(text)) return { text: mask(text), masked: true };
      return { text, masked: false };
    },

    // Boxes (viewport CSS px) to paint over in a screenshot of the page as it is now.
    sensitiveBoxes() {
      const boxes = [];
      const selector = ["input", "textarea", "select", "[contenteditable=true]",
        ...this.rules.maskClasses.map((c) => "." + CSS.escape(c)),
        ...this.rules.blockClasses.map((c) => "." + CSS.escape(c)), ...this.rules.maskSelectors].join(",");
      for (const el of document.querySelectorAll(selector)) {
        if (!(this.isMasked(el) || (isField(el) && looksSensitive(el.value)))) continue;
        const r = el.getBoundingClientRect();
        if (r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth) {
          boxes.push({ x: r.x, y: r.y, width: r.width, height: r.height });
        }
      }
      return boxes;
    },
  };

  function unique(list) {
    return [...new Set(list.filter((c) => typeof c === "string" && /^[A-Za-z_-][\w-]*$/.test(c)))];
  }

  function validSelector(s) {
    try {
      document.createDocumentFragment().querySelector(s);
      return true;
    } catch (_) {
      return false;
    }
  }

  function autocomplete(el) {
    return String(el.getAttribute("autocomplete") || "").toLowerCase().trim().split(/\s+/).pop();
  }

  function isField(el) {
    return el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement ||
      (el instanceof HTMLElement && el.isContentEditable);
  }

  function isButtonLike(el) {
    return el instanceof HTMLInputElement && ["button", "submit", "reset", "checkbox", "radio", "range", "color"].includes(el.type);
  }

  function labelText(el) {
    return el.labels ? [...el.labels].map((l) => l.textContent).join(" ") : "";
  }

  // A card number (13–19 digits passing Luhn, spaces/dashes allowed) or an email address.
  function looksSensitive(value) {
    if (typeof value !== "string" || !value) return false;
    if (EMAIL.test(value)) return true;
    for (const m of value.match(/(?:\d[ -]?){13,19}/g) || []) {
      if (luhn(m.replace(/\D/g, ""))) return true;
    }
    return false;
  }

  function luhn(digits) {
    if (digits.length < 13 || digits.length > 19) return false;
    let sum = 0;
    for (let i = 0; i < digits.length; i++) {
      let d = Number(digits[digits.length - 1 - i]);
      if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
      sum += d;
    }
    return sum % 10 === 0;
  }

  // Keep the shape (length, spaces) so a reader sees "a 16-digit value", never the value.
  function mask(value) {
    if (typeof value !== "string") return value == null ? null : "*";
    return value.slice(0, 256).replace(/\S/g, "*");
  }

  TM.privacy.looksSensitive = looksSensitive;
})();

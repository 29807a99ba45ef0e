/* The hub's embeddable form: renders the form into the page that includes this
   script and posts it to the hub (CORS; the site must be in the form's
   allowed_origins). Everything shown is set as text, never as HTML. */
(function () {
  "use strict";
  var FORM = __HUB_FORM__;
  var script = document.currentScript;
  var base = script && script.src ? new URL(script.src) : new URL(location.href);
  var endpoint = base.origin + "/f/" + encodeURIComponent(FORM.id);
  var prefix = "hubf-" + FORM.id + "-";
  var key = (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
    : String(Date.now()) + Math.random().toString(16).slice(2);

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) { node.textContent = text; }
    return node;
  }

  var root = el("div", { "class": "hub-form", "id": prefix + "root" });
  var target = script && script.getAttribute("data-target");
  var host = target ? document.querySelector(target) : null;
  if (host) { host.appendChild(root); }
  else if (script && script.parentNode) { script.parentNode.insertBefore(root, script.nextSibling); }
  else { document.body.appendChild(root); }

  var form = el("form", { "novalidate": "novalidate" });
  var summary = el("div", { "class": "hub-form-summary", "role": "alert", "id": prefix + "error-_form" });
  summary.hidden = true;
  form.appendChild(summary);
  var inputs = {};
  var errors = {};
  FORM.fields.forEach(function (f) {
    var id = prefix + f.name;
    var input;
    if (f.type === "hidden") {
      input = el("input", { "type": "hidden", "name": f.name });
      form.appendChild(input);
      inputs[f.name] = input;
      return;
    }
    var label = el("label", { "for": id }, f.label + (f.required ? " *" : ""));
    if (f.type === "textarea") {
      input = el("textarea", { "id": id, "name": f.name, "maxlength": String(f.max_length) });
    } else if (f.type === "file") {
      input = el("input", { "id": id, "name": f.name, "type": "file" });
      if (f.accept) { input.setAttribute("accept", f.accept); }
    } else {
      input = el("input", { "id": id, "name": f.name, "type": f.type });
      if (f.type !== "checkbox") { input.setAttribute("maxlength", String(f.max_length)); }
    }
    var row = el("div", { "class": "hub-form-field" });
    if (f.type === "checkbox") { label.insertBefore(input, label.firstChild); row.appendChild(label); }
    else { row.appendChild(label); row.appendChild(input); }
    var error = el("span", { "class": "hub-form-error", "id": prefix + "error-" + f.name });
    error.hidden = true;
    row.appendChild(error);
    form.appendChild(row);
    inputs[f.name] = input;
    errors[f.name] = error;
  });
  var trap = el("div", { "aria-hidden": "true",
    "style": "position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden" });
  var honeypot = el("input", { "type": "text", "name": FORM.honeypot, "tabindex": "-1", "autocomplete": "off" });
  trap.appendChild(honeypot);
  form.appendChild(trap);
  var button = el("button", { "type": "submit" }, FORM.send);
  form.appendChild(button);
  root.appendChild(form);

  function showErrors(found) {
    Object.keys(errors).forEach(function (name) {
      var shown = found && found[name];
      errors[name].textContent = shown || "";
      errors[name].hidden = !shown;
      if (shown) { inputs[name].setAttribute("aria-invalid", "true"); }
      else { inputs[name].removeAttribute("aria-invalid"); }
    });
    var whole = found && (found._form || (Object.keys(found).length ? FORM.errors_title : ""));
    summary.textContent = whole || "";
    summary.hidden = !whole;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var hasFile = FORM.fields.some(function (f) {
      return f.type === "file" && inputs[f.name].files && inputs[f.name].files.length;
    });
    var meta = { "_ts": FORM.ts, "_page": location.href, "_referrer": document.referrer || "" };
    meta[FORM.honeypot] = honeypot.value;
    new URLSearchParams(location.search).forEach(function (value, name) {
      if (name.indexOf("utm_") === 0) { meta[name] = value; }
    });
    var body, headers = { "Accept": "application/json", "Idempotency-Key": key };
    if (hasFile) {
      body = new FormData();
      Object.keys(meta).forEach(function (k) { body.append(k, meta[k]); });
      FORM.fields.forEach(function (f) {
        var input = inputs[f.name];
        if (f.type === "file") { if (input.files.length) { body.append(f.name, input.files[0]); } }
        else if (f.type === "checkbox") { if (input.checked) { body.append(f.name, "on"); } }
        else { body.append(f.name, input.value); }
      });
    } else {
      body = {};
      Object.keys(meta).forEach(function (k) { body[k] = meta[k]; });
      FORM.fields.forEach(function (f) {
        var input = inputs[f.name];
        body[f.name] = f.type === "checkbox" ? input.checked : input.value;
      });
      body = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    button.disabled = true;
    fetch(endpoint, { method: "POST", mode: "cors", headers: headers, body: body })
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (response.status === 201 || response.status === 200) {
            if (FORM.redirect) { location.href = FORM.redirect; return; }
            root.textContent = "";
            root.appendChild(el("p", { "class": "hub-form-thanks", "id": prefix + "thanks" }, FORM.thank_you));
            return;
          }
          showErrors(data.errors || { "_form": FORM.failed });
        });
      })
      .catch(function () { showErrors({ "_form": FORM.failed }); })
      .then(function () { button.disabled = false; });
  });
})();

/* Student answer pages: autosave each answer as it is given (progressive enhancement).
   Without this file the page still works with a plain form post. Nothing is kept in the browser:
   no localStorage, no sessionStorage, no IndexedDB; the answer lives only in the form and the server. */
(function () {
  "use strict";
  var form = document.getElementById("page-form");
  if (!form || !window.fetch) { return; }
  var url = form.getAttribute("data-autosave");
  var instrument = form.getAttribute("data-instrument");
  var startUrl = form.getAttribute("data-start");
  var meta = document.querySelector('meta[name="csrf-token"]');
  var token = meta ? meta.getAttribute("content") : "";
  var status = document.getElementById("save-status");
  var help = document.getElementById("help");
  var last = Date.now();
  var pending = 0;

  function say(text) { if (status) { status.textContent = text; } }
  function zh() { return (document.documentElement.lang || "").indexOf("zh") === 0; }

  function save(item, value, ms, attempt) {
    pending += 1;
    say(zh() ? "正在保存…" : "Saving…");
    fetch(url, {
      method: "POST", credentials: "same-origin", cache: "no-store",
      headers: {"Content-Type": "application/json", "X-CSRFToken": token},
      body: JSON.stringify({instrument: instrument, item: item, value: value, ms: ms})
    }).then(function (r) {
      if (r.status === 401 || r.status === 403) { window.location.replace(startUrl); return null; }
      if (!r.ok) { throw new Error("http " + r.status); }
      return r.json();
    }).then(function (data) {
      pending -= 1;
      if (!data) { return; }
      say(zh() ? "已保存" : "Saved");
      if (data.critical && help && help.hidden) { help.hidden = false; help.focus(); }
    }).catch(function () {
      pending -= 1;
      if (attempt < 3) {
        setTimeout(function () { save(item, value, ms, attempt + 1); }, 800 * (attempt + 1));
      } else {
        say(zh() ? "网络不稳定：答案会在提交本部分时一并保存。" : "Connection problem: answers will be saved when you submit this part.");
      }
    });
  }

  form.addEventListener("change", function (ev) {
    var el = ev.target;
    if (!el || el.type !== "radio" || el.name.charAt(0) !== "i") { return; }
    var item = el.name.slice(1);
    var now = Date.now();
    var ms = now - last;
    last = now;
    var t = form.querySelector('input[name="t' + item + '"]');
    if (t) { t.value = String(ms); }
    save(item, el.value, ms, 0);
  });

  // a page restored from the back/forward cache must be fetched again (the server decides)
  window.addEventListener("pageshow", function (ev) { if (ev.persisted) { window.location.reload(); } });
})();

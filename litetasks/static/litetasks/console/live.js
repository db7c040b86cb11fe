/*
 * litetasks console: refresh the page's live part (#lt-live) every few seconds while the tab
 * is visible; stop while it is hidden, while a box in it is ticked, or while it has focus.
 * Inputs marked data-live-keep (a bulk action's snapshot) keep the values the page was loaded
 * with. Without JavaScript the page is complete as served. Part of litetasks (BSD-3-Clause, see
 * LICENSE in this folder); no third-party code.
 */
(function () {
  "use strict";
  var root = document.getElementById("lt-live");
  if (!root || !root.hasAttribute("data-live-seconds")) {
    return;
  }
  var period = Math.max(1, Number(root.getAttribute("data-live-seconds"))) * 1000;
  var timer = null;

  function isBusy() {
    return root.querySelector("input[type=checkbox]:checked") !== null ||
      root.contains(document.activeElement) && document.activeElement !== document.body;
  }

  function schedule() {
    window.clearTimeout(timer);
    timer = null;
    if (document.visibilityState === "visible") {
      timer = window.setTimeout(refresh, period);
    }
  }

  function refresh() {
    if (document.visibilityState !== "visible" || isBusy()) {
      schedule();
      return;
    }
    window.fetch(window.location.href, {credentials: "same-origin", headers: {"X-Litetasks-Live": "1"}})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null || isBusy()) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("lt-live");
        if (fresh) {
          var kept = {};
          root.querySelectorAll("input[data-live-keep]").forEach(function (input) {
            kept[input.name] = input.value;
          });
          root.innerHTML = fresh.innerHTML;
          root.querySelectorAll("input[data-live-keep]").forEach(function (input) {
            if (Object.prototype.hasOwnProperty.call(kept, input.name)) {
              input.value = kept[input.name];
            }
          });
          root.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () { /* the next tick tries again */ })
      .then(schedule);
  }

  document.addEventListener("visibilitychange", schedule);
  schedule();
}());

// Shows new activity without a manual reload: asks the server every second whether the
// workspace changed, and reloads the page when it did (not while someone is typing in a
// field: a focused field whose text they changed). It starts from the mark the server read
// before it built the page, so a change made between the page and the first ask is shown.
// The pages work the same without it.
(function () {
  "use strict";
  var stamped = document.querySelector('meta[name="cio-anon-mark"]');
  var seen = stamped ? stamped.getAttribute("content") : null;
  function typing() {
    var active = document.activeElement;
    var field = active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA");
    return Boolean(field && active.value !== active.defaultValue);
  }
  function poll() {
    fetch("/changes", { cache: "no-store" })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (body) {
        if (body === null) return;
        if (seen !== null && body.mark !== seen && !typing()) {
          window.location.reload();
          return;
        }
        seen = body.mark;
      })
      .catch(function () {})
      .then(function () { window.setTimeout(poll, 1000); });
  }
  poll();
})();

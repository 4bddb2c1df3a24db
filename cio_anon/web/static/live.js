// Shows new activity without a manual reload: asks the server every second whether the
// workspace changed and, when it did, whether this page would now show anything else (the
// server renders it again as of the time it was rendered and compares digests); it
// reloads only then, so a person's page stays put while traffic for others comes in. Not
// while someone is typing in a field (a focused field whose text they changed). It starts
// from the mark the server read before it built the page, so a change made between the
// page and the first ask is shown. The pages work the same without it.
(function () {
  "use strict";
  var stamped = document.querySelector('meta[name="cio-anon-mark"]');
  var parts = stamped ? stamped.getAttribute("content").split(" ") : [];
  var seen = parts.length === 2 ? parts[0] : null;
  var digest = parts.length === 2 ? parts[1] : null;
  var at = stamped ? stamped.getAttribute("data-at") : null;
  function typing() {
    var active = document.activeElement;
    var field = active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA");
    return Boolean(field && active.value !== active.defaultValue);
  }
  function asking() {
    if (seen === null || at === null) return "/changes";
    var shown = window.location.pathname + window.location.search;
    return "/changes?" + new URLSearchParams({ seen: seen, page: shown, at: at }).toString();
  }
  function poll() {
    fetch(asking(), { cache: "no-store" })
      .then(function (answer) { return answer.ok ? answer.json() : null; })
      .then(function (body) {
        if (body === null) return;
        var changed = body.page === undefined || body.page !== digest;
        if (seen !== null && body.mark !== seen && changed && !typing()) {
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

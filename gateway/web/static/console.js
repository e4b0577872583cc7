// The live transmission log: every 5 s, fetch the table body for the same filters (the
// fragment URL carries them) and swap it in. Nothing else on the pages needs script.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var target = document.getElementById(live.dataset.target);
  var every = 5000;
  function refresh() {
    fetch(live.dataset.src, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || !r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        target.innerHTML = html;
        live.classList.remove("stale");
        live.textContent = "updated " + new Date().toLocaleTimeString() + " · every 5 s";
      })
      .catch(function (err) {
        live.classList.add("stale");
        live.textContent = "not updated: " + err.message;
      })
      .finally(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();

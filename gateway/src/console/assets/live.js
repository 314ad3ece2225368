// The live refusals page's refresh: every 10 s, the page is fetched again and its charts
// (#live) replaced; the button pauses and resumes it (WCAG 2.2.2). Without this script the
// page is whole and current as loaded. A page that comes back without charts (the session
// ended) is loaded as a whole, which shows the sign-in form.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var button = document.getElementById("live-pause");
  if (!live || !button || !window.fetch || !window.DOMParser) return;
  var paused = false;
  button.hidden = false;
  button.addEventListener("click", function () {
    paused = !paused;
    button.setAttribute("aria-pressed", paused ? "true" : "false");
    button.textContent = paused ? button.dataset.resume : button.dataset.pause;
  });
  window.setInterval(function () {
    if (paused || document.hidden) return;
    window.fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (res) { return res.ok ? res.text() : Promise.reject(res.status); })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (!next) { window.location.reload(); return; }
        live.innerHTML = next.innerHTML;
      })
      .catch(function () { /* the next period tries again */ });
  }, 10000);
})();

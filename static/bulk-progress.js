// Follows a running bulk job: polls its counters every two seconds, updates the
// progress bar and the live status, and reloads the page (with the line report)
// once the job has finished. Without JavaScript, reloading the page does the same.
(function () {
  "use strict";
  var box = document.getElementById("bulk-progress");
  if (!box || box.getAttribute("data-finished") === "true") {
    return;
  }
  var meter = document.getElementById("bulk-meter");
  function show(name, value) {
    var span = box.querySelector('[data-count="' + name + '"]');
    if (span) {
      span.textContent = String(value);
    }
  }
  function poll() {
    fetch(box.getAttribute("data-url"), { credentials: "same-origin" })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (progress) {
        if (!progress) {
          return;
        }
        if (progress.finished) {
          window.location.reload();
          return;
        }
        meter.value = progress.delivered + progress.refused;
        show("delivered", progress.delivered);
        show("refused", progress.refused);
        show("pending", progress.pending);
        window.setTimeout(poll, 2000);
      })
      .catch(function () {
        window.setTimeout(poll, 5000);
      });
  }
  window.setTimeout(poll, 1000);
})();

// Atrium console: keeps the parts of a page marked data-live="<event stream URL>" current.
// Each stream sends "update" events holding the part's new HTML (rendered and escaped by the
// server) and "signedout" when the session has ended. No inline script anywhere: CSP.
(function () {
  "use strict";
  function follow(element) {
    var source = new EventSource(element.getAttribute("data-live"));
    source.addEventListener("update", function (event) {
      element.innerHTML = event.data;
      if (window.htmx) { window.htmx.process(element); }
    });
    source.addEventListener("signedout", function () {
      source.close();
      window.location.assign("/admin/signin?next=" + encodeURIComponent(window.location.pathname));
    });
  }
  function start() {
    var elements = document.querySelectorAll("[data-live]");
    for (var i = 0; i < elements.length; i++) { follow(elements[i]); }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

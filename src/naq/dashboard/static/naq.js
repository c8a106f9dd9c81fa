/* naq dashboard: the "live updates lost" banner while the SSE stream is down, and short
   event lists (at most data-max rows). No job data is ever turned into markup here. */
(function () {
  "use strict";
  function lost(show) {
    var banner = document.getElementById("live-lost");
    if (banner) { banner.hidden = !show; }
  }
  document.body.addEventListener("htmx:sseError", function () { lost(true); });
  document.body.addEventListener("htmx:sseOpen", function () { lost(false); });
  function trim(list) {
    var max = list && list.getAttribute && parseInt(list.getAttribute("data-max"), 10);
    if (!max) { return; }
    while (list.children.length > max) { list.removeChild(list.lastElementChild); }
    var empty = list.parentElement && list.parentElement.querySelector(".empty");
    if (empty && list.children.length) { empty.remove(); }
  }
  document.body.addEventListener("htmx:sseMessage", function (evt) { lost(false); trim(evt.target); });
  document.body.addEventListener("htmx:afterSwap", function (evt) { trim(evt.target); });
})();

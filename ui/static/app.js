// Latchkey dashboard: progressive enhancement only. Every action works
// without this file; it adds copy buttons and confirm dialogs.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("button[data-copy]").forEach(function (b) {
      var field = document.getElementById(b.getAttribute("data-copy"));
      if (!field || !navigator.clipboard) { return; }
      b.hidden = false;
      b.addEventListener("click", function () {
        navigator.clipboard.writeText(field.value).then(function () {
          b.textContent = "Copied";
        }, function () {
          field.select();
        });
      });
    });
    // A form with data-confirm asks in a dialog; confirmed, it carries
    // confirm=yes and skips the server's confirmation page.
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) {
          e.preventDefault();
          return;
        }
        if (!f.querySelector("input[name=confirm]")) {
          var c = document.createElement("input");
          c.type = "hidden";
          c.name = "confirm";
          c.value = "yes";
          f.appendChild(c);
        }
      });
    });
    var bulk = document.getElementById("bulk");
    if (bulk) {
      bulk.addEventListener("submit", function (e) {
        var n = bulk.querySelectorAll("input[name=id]:checked").length;
        if (n === 0) { e.preventDefault(); window.alert("Select at least one key."); }
      });
    }
  });
})();

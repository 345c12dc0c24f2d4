// The console works without this file; it only adds a "select all" box to the dead-letter list.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var all = document.getElementById("select-all");
  if (!all) return;
  all.hidden = false;
  all.addEventListener("change", function () {
    document.querySelectorAll('input[type="checkbox"][name="seq"]').forEach(function (box) {
      box.checked = all.checked;
    });
  });
});

// Sorting (per section, so the paper's row groups stay together) and status filters. No dependencies.
(function () {
  "use strict";
  function key(td) {
    if (!td) return null;
    if (td.dataset.sort !== undefined) return td.dataset.sort === "" ? null : parseFloat(td.dataset.sort);
    return td.textContent.trim().toLowerCase();
  }
  function compare(a, b, dir) {
    if (a === null && b === null) return 0;
    if (a === null) return 1;            // empty (pending) cells last in either direction
    if (b === null) return -1;
    if (a < b) return -dir;
    if (a > b) return dir;
    return 0;
  }
  document.querySelectorAll("table.report thead th[data-col]").forEach(function (th) {
    th.addEventListener("click", function () {
      var table = th.closest("table");
      var col = parseInt(th.dataset.col, 10);
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      table.querySelectorAll("thead th[data-col]").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      table.querySelectorAll("tbody").forEach(function (body) {
        var rows = Array.prototype.slice.call(body.querySelectorAll("tr.datarow"));
        rows.sort(function (r1, r2) { return compare(key(r1.children[col]), key(r2.children[col]), dir); });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  var boxes = document.querySelectorAll("input.status-filter");
  function applyFilter() {
    var on = {}, all = true;
    boxes.forEach(function (b) { on[b.value] = b.checked; if (!b.checked) all = false; });
    document.querySelectorAll("tr.datarow").forEach(function (tr) {
      var visible = 0;
      tr.querySelectorAll("td.cell").forEach(function (td) {
        var keep = on[td.dataset.status] !== false;
        td.classList.toggle("filtered", !keep);
        if (keep) visible += 1;
      });
      tr.classList.toggle("hidden", !all && visible === 0);
    });
  }
  boxes.forEach(function (b) { b.addEventListener("change", applyFilter); });
})();

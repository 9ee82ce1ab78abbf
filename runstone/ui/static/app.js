// runstone UI: the runs table's keyboard and selection, and search boxes over trees and tables.
"use strict";
(function () {
  function runsTable() {
    var table = document.getElementById("runs");
    if (!table) return;
    var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-href]"));
    var button = document.getElementById("compare");
    var label = document.getElementById("selected");
    function update() {
      var n = table.querySelectorAll("tbody input[name=run]:checked").length;
      button.disabled = n < 2 || n > 50;
      label.textContent = n === 0 ? "none selected"
        : n + " selected" + (n < 2 ? " (pick one more)" : n > 50 ? " (compare at most 50)" : "");
      rows.forEach(function (row) {
        var box = row.querySelector("input[name=run]");
        row.setAttribute("aria-selected", box.checked ? "true" : "false");
      });
    }
    function focusRow(i) {
      if (i < 0 || i >= rows.length) return;
      rows.forEach(function (row, j) { row.tabIndex = j === i ? 0 : -1; });
      rows[i].focus();
    }
    rows.forEach(function (row, i) {
      row.addEventListener("keydown", function (ev) {
        if (ev.target !== row) return;
        if (ev.key === "ArrowDown" || ev.key === "j") { focusRow(i + 1); ev.preventDefault(); }
        else if (ev.key === "ArrowUp" || ev.key === "k") { focusRow(i - 1); ev.preventDefault(); }
        else if (ev.key === "Home") { focusRow(0); ev.preventDefault(); }
        else if (ev.key === "End") { focusRow(rows.length - 1); ev.preventDefault(); }
        else if (ev.key === "Enter") { window.location.href = row.dataset.href; ev.preventDefault(); }
        else if (ev.key === " ") {
          var box = row.querySelector("input[name=run]");
          box.checked = !box.checked; update(); ev.preventDefault();
        }
      });
      row.addEventListener("click", function (ev) {
        if (ev.target.closest("a, input, button")) return;
        var box = row.querySelector("input[name=run]");
        box.checked = !box.checked; update();
      });
    });
    table.addEventListener("change", update);
    update();
  }

  function searchBoxes() {
    document.querySelectorAll("input.tree-search").forEach(function (input) {
      var box = document.getElementById(input.dataset.target);
      input.addEventListener("input", function () {
        var q = input.value.trim().toLowerCase();
        box.querySelectorAll("li").forEach(function (li) {
          var hit = !q || li.textContent.toLowerCase().indexOf(q) >= 0;
          li.hidden = !hit;
          if (q && hit) li.querySelectorAll(":scope > details").forEach(function (d) { d.open = true; });
        });
      });
    });
    document.querySelectorAll("input.table-search").forEach(function (input) {
      var table = document.getElementById(input.dataset.target);
      input.addEventListener("input", function () {
        var q = input.value.trim().toLowerCase();
        table.querySelectorAll("tbody tr").forEach(function (tr) {
          tr.hidden = q && tr.textContent.toLowerCase().indexOf(q) < 0;
        });
      });
    });
  }

  // A page of a running run reloads when the run ends or logs a new metric
  // (its charts poll for points by themselves; new charts and the status need the page).
  function watchRun() {
    var head = document.querySelector("[data-live-run]");
    if (!head) return;
    var every = Number(document.body.dataset.pollMs) || 2000;
    var keys = JSON.stringify(JSON.parse(head.dataset.keys));
    function check() {
      fetch("/api/runs/" + head.dataset.liveRun + "/status", { headers: { accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (s && (s.status !== "running" || JSON.stringify(s.metrics) !== keys)) window.location.reload();
          else setTimeout(check, every);
        })
        .catch(function () { setTimeout(check, every * 2); });
    }
    setTimeout(check, every);
  }

  document.addEventListener("DOMContentLoaded", function () { runsTable(); searchBoxes(); watchRun(); });
})();

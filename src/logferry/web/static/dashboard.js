// logferry dashboard: draws the charts the page describes (with the vendored Chart.js) and
// remembers the action token for this tab. The data comes from the server in a JSON script
// element; every chart has its numbers in a table on the same page.
(function () {
  "use strict";
  var palette = ["#1f5f8b", "#b3261e", "#1e7b34", "#c77c02", "#6a3d9a", "#00838f", "#7a5c3e", "#d81b60"];
  var named = { ok: "#1e7b34", failed: "#b3261e", median: "#1f5f8b", p99: "#c77c02" };

  function drawCharts() {
    var spec = document.getElementById("charts");
    if (!spec || typeof window.Chart === "undefined") return;
    JSON.parse(spec.textContent).forEach(function (c) {
      var canvas = document.getElementById(c.canvas);
      if (!canvas) return;
      var datasets = c.datasets.map(function (d, i) {
        var color = named[d.label] || palette[i % palette.length];
        return {
          label: d.label, data: d.data, backgroundColor: color, borderColor: color,
          borderWidth: c.type === "line" ? 2 : 0, pointRadius: c.type === "line" ? 2 : 0,
          spanGaps: true, stack: c.stacked ? "one" : undefined
        };
      });
      var valueAxis = { beginAtZero: true, stacked: !!c.stacked, title: { display: true, text: c.y } };
      if (c.ymax !== undefined && c.ymax !== null) valueAxis.max = c.ymax;
      var labelAxis = { stacked: !!c.stacked, ticks: { autoSkip: true, maxRotation: 0 } };
      new window.Chart(canvas, {
        type: c.type,
        data: { labels: c.labels, datasets: datasets },
        options: {
          indexAxis: c.horizontal ? "y" : "x",
          responsive: true, maintainAspectRatio: false, animation: false,
          plugins: { legend: { display: datasets.length > 1 || c.type === "line", position: "bottom" } },
          scales: c.horizontal ? { x: valueAxis, y: labelAxis } : { x: labelAxis, y: valueAxis }
        }
      });
    });
  }

  function rememberToken() {
    var key = "logferry-dashboard-token";
    var fields = document.querySelectorAll("input.token");
    var saved = null;
    try { saved = window.sessionStorage.getItem(key); } catch (e) { return; }
    fields.forEach(function (field) {
      if (saved && !field.value) field.value = saved;
      field.form.addEventListener("submit", function () {
        try { window.sessionStorage.setItem(key, field.value); } catch (e) { /* private mode */ }
      });
    });
  }

  drawCharts();
  rememberToken();
})();

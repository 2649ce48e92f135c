// reftrack's pages: a copy button, and charts drawn with uPlot from the figures the page
// carries (the same figures are in a table beside each chart).
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  const status = button.parentElement.querySelector(".copied");
  try {
    await navigator.clipboard.writeText(field.value);
  } catch {
    field.select();
    document.execCommand("copy");
  }
  if (status) status.textContent = "Copied";
});

const COLOURS = ["#1f5fbf", "#b3261e", "#2e7d32", "#6a3fa0"];

function draw(element) {
  const data = JSON.parse(element.dataset.chart);
  const width = Math.max(280, element.clientWidth || 600);
  const xs = data.labels.map((_, i) => i);
  const opts = {
    width,
    height: 260,
    series: [{}].concat(data.series.map((s, i) => ({ label: s.name, stroke: COLOURS[i % COLOURS.length], width: 2 }))),
    axes: [{ values: (u, ticks) => ticks.map((t) => data.labels[t] || "") }, {}],
    scales: { x: { time: false } },
  };
  element.replaceChildren();
  new uPlot(opts, [xs].concat(data.series.map((s) => s.values)), element);
}

window.addEventListener("load", () => {
  if (typeof uPlot === "undefined") return;
  document.querySelectorAll("[data-chart]").forEach(draw);
});

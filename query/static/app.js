// userstats pages: progressive enhancement. The server renders every figure; this script
// only (1) redraws the population chart with uPlot and (2) keeps the page live: every
// second it asks for the same page again (If-None-Match: a 304 costs nothing), parses the
// answer with DOMParser (never innerHTML) and swaps in the [data-live] sections that changed.
"use strict";
(function () {
  const POLL_MS = 1000;
  const MAX_BACKOFF_MS = 30000;
  const charts = new Map();
  const served = new Map(); // section id -> its HTML as the server sent it

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function drawCharts(root) {
    if (typeof window.uPlot !== "function") return;
    for (const fig of root.querySelectorAll("figure[data-series]")) {
      const data = JSON.parse(fig.dataset.series);
      const holder = fig.querySelector(".chart-live");
      if (!holder || data[0].length === 0) continue;
      const old = charts.get(fig.id);
      if (old) old.destroy();
      const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid"), width: 1 }, ticks: { show: false } };
      const hhmm = window.uPlot.fmtDate("{HH}:{mm}");
      const day = window.uPlot.fmtDate("{D} {MMM}");
      const utc = (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
      // 24-hour UTC times, with the date under the first tick of each day
      const timeAxis = Object.assign({}, axis, {
        values: (u, ticks) => {
          let last = "";
          return ticks.map((t) => {
            const d = utc(t);
            const date = day(d);
            const label = date === last ? hhmm(d) : hhmm(d) + "\n" + date;
            last = date;
            return label;
          });
        },
      });
      const chart = new window.uPlot(
        {
          width: Math.max(200, holder.clientWidth),
          height: 180,
          tzDate: utc,
          legend: { live: false },
          scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
          series: [
            { label: "UTC" },
            { label: "connected", stroke: cssVar("--c1"), fill: cssVar("--c1-fill"), width: 2 },
            { label: "chatting", stroke: cssVar("--c2"), width: 2 },
          ],
          axes: [timeAxis, Object.assign({ size: 40 }, axis)],
        },
        data,
        holder,
      );
      fig.classList.add("drawn");
      charts.set(fig.id, chart);
    }
  }

  function resizeCharts() {
    for (const [id, chart] of charts) {
      const holder = document.querySelector("#" + id + " .chart-live");
      if (holder) chart.setSize({ width: Math.max(200, holder.clientWidth), height: 180 });
    }
  }

  function remember(root) {
    for (const el of root.querySelectorAll("[data-live][id]")) served.set(el.id, el.outerHTML);
  }

  function apply(doc) {
    for (const fresh of doc.querySelectorAll("[data-live][id]")) {
      const html = fresh.outerHTML;
      const current = document.getElementById(fresh.id);
      if (!current || served.get(fresh.id) === html) continue;
      const node = document.importNode(fresh, true);
      current.replaceWith(node);
      served.set(fresh.id, html);
      if (node.classList.contains("card")) node.classList.add("updated");
      drawCharts(node);
    }
  }

  function start() {
    remember(document);
    drawCharts(document);
    window.addEventListener("resize", resizeCharts);
    const main = document.getElementById("live");
    const status = document.getElementById("live-status");
    if (!main || !main.dataset.etag || !window.fetch || !window.DOMParser) return;
    let etag = main.dataset.etag;
    let failures = 0;

    function show(ok, text) {
      if (!status) return;
      status.textContent = text;
      status.className = "live-status " + (ok ? "on" : "off");
    }

    async function refresh() {
      if (!document.hidden) {
        try {
          const response = await fetch(location.pathname + location.search, {
            headers: { "If-None-Match": etag, Accept: "text/html" },
            cache: "no-store",
          });
          if (response.status === 200) {
            apply(new DOMParser().parseFromString(await response.text(), "text/html"));
            etag = response.headers.get("ETag") || etag;
          }
          if (response.status === 200 || response.status === 304) {
            failures = 0;
            show(true, "live · " + new Date().toLocaleTimeString());
          } else {
            failures += 1;
            show(false, "the replica answered " + response.status + "; retrying");
          }
        } catch (error) {
          failures += 1;
          show(false, "offline; retrying");
        }
      }
      setTimeout(refresh, Math.min(MAX_BACKOFF_MS, POLL_MS * 2 ** failures));
    }

    show(true, "live");
    setTimeout(refresh, POLL_MS);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) show(true, "live");
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

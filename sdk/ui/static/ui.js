// The UI's only script of its own (no build step; the page's CSP allows no inline script).

// Forms with data-confirm (workflow actions, dead-letter requeue/drop) ask before they
// are sent.
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

// A running workflow's page follows its history: the server sends an event whenever
// history grows (a blocking read on the stream), and the live part is fetched again.
document.addEventListener("DOMContentLoaded", () => {
  const live = document.getElementById("live");
  if (!live || !live.dataset.stream) return;
  const source = new EventSource(live.dataset.stream);
  let pending = null;
  const refresh = () => {
    // Events come in bursts (a workflow task appends several): fetch once per burst.
    clearTimeout(pending);
    pending = setTimeout(() => htmx.ajax("GET", live.dataset.src, {target: live, swap: "innerHTML"}), 100);
  };
  source.addEventListener("history", refresh);
  source.addEventListener("closed", () => { source.close(); refresh(); });
});

// Live run page: poll the run's progress every second until it ends, refresh the charts,
// then wait for the audit the workers record when a run finishes, and stop.
(function () {
  "use strict";
  const root = document.getElementById("run");
  if (!root) return;
  const progressUrl = root.dataset.progressUrl;
  const chartsUrl = root.dataset.chartsUrl;
  const charts = document.getElementById("charts");
  const number = (n) => Number(n).toLocaleString("en-US");
  let ticks = 0;

  function set(field, text) {
    for (const el of root.querySelectorAll(`[data-field="${field}"]`)) el.textContent = text;
  }

  async function refreshCharts() {
    const response = await fetch(chartsUrl, { credentials: "same-origin" });
    if (response.ok) charts.innerHTML = await response.text();
  }

  function renderAudit(audit) {
    const box = root.querySelector('[data-field="audit"]');
    box.replaceChildren();
    const title = document.createElement("h2");
    const badge = document.createElement("span");
    badge.className = "badge " + (audit.passed ? "completed" : "failed");
    badge.textContent = audit.passed ? "passed" : "failed";
    title.append("Audit ", badge);
    const list = document.createElement("ul");
    list.className = "checks";
    for (const check of audit.checks) {
      const item = document.createElement("li");
      item.className = check.passed ? "pass" : "fail";
      const mark = document.createElement("strong");
      mark.textContent = check.passed ? "PASS" : "FAIL";
      const examined = check.examined === null ? "" : ` (${check.examined} examined)`;
      item.append(mark, ` rule ${check.rule}: ${check.description}${examined}`);
      if (check.breaches.length) {
        const breaches = document.createElement("ul");
        for (const breach of check.breaches) {
          const li = document.createElement("li");
          li.textContent = breach;
          breaches.append(li);
        }
        item.append(breaches);
      }
      if (check.notes && check.notes.length) {
        const notes = document.createElement("ul");
        notes.className = "notes";
        for (const note of check.notes) {
          const li = document.createElement("li");
          li.textContent = "note: " + note;
          notes.append(li);
        }
        item.append(notes);
      }
      list.append(item);
    }
    box.append(title, list);
  }

  function render(p) {
    set("status", p.status);
    root.querySelector('[data-field="status"]').className = "badge " + p.status;
    set("percent", p.percent + "%");
    root.querySelector(".progress .bar").style.width = p.percent + "%";
    root.querySelector(".progress").setAttribute("aria-valuenow", p.percent);
    set("signed_records", number(p.signed_records));
    set("total_records", number(p.total_records));
    set("batches_signed", number(p.batches_signed));
    set("batches_in_flight", p.batches_in_flight);
    set("batches_pending", number(p.batches_pending));
    set("batches_cancelled", number(p.batches_cancelled));
    // A cancelled run's unsigned batches wait for nothing: they are not pending any more.
    const cancelled = p.status === "cancelled";
    root.querySelector('[data-figure="pending"]').hidden = cancelled;
    root.querySelector('[data-figure="cancelled"]').hidden = !cancelled;
    set("batches_failed", p.batches_failed);
    set("records_per_second", number(Math.round(p.records_per_second)));
    set("eta", p.eta_seconds === null ? "–" : Math.round(p.eta_seconds) + " s");
    set("keys_used", p.keys_used);
    set("merkle_root", p.merkle_root || "–");
    const follow = p.follow_activity;
    if (follow) {
      const ms = (value) => (value === null ? "–" : Math.round(value) + " ms");
      set("follow_arrivals", number(follow.arrivals));
      set("follow_waiting", number(follow.waiting));
      set("follow_backlog", number(follow.backlog));
      set("follow_latency_p50", ms(follow.latency_p50_ms));
      set("follow_latency_p99", ms(follow.latency_p99_ms));
      set("follow_latency_max", ms(follow.latency_max_ms));
      if (p.finished) set("follow_state", "ended: " + p.status);
      else if (follow.stop_requested_at) set("follow_state", "stopping: no new records taken in");
      const checkpoint = p.latest_checkpoint;
      const shown = root.querySelector('[data-field="checkpoint"]');
      if (shown && checkpoint) {
        const code = (text) => Object.assign(document.createElement("code"), { textContent: text });
        shown.replaceChildren(
          number(checkpoint.batches) + " batches, root ",
          code(checkpoint.merkle_root),
          ", key ",
          code(checkpoint.kid),
        );
      }
    }
    const reason = root.querySelector('[data-field="failure_reason"]');
    reason.textContent = p.failure_reason;
    reason.hidden = !p.failure_reason;
  }

  async function poll() {
    let p = null;
    try {
      const response = await fetch(progressUrl, { credentials: "same-origin" });
      if (response.ok) p = await response.json();
    } catch (error) {
      // The server restarting is not the run failing: try again next second.
    }
    if (p) {
      render(p);
      ticks += 1;
      if (p.finished) {
        root.dataset.finished = "true";
        for (const el of root.querySelectorAll("[data-while-active]")) el.remove();
        await refreshCharts();
        if (p.audit) {
          renderAudit(p.audit);
          return; // done: nothing on this page changes any more
        }
        set("audit", "Auditing…");
      } else if (ticks % 3 === 0) {
        refreshCharts();
      }
    }
    setTimeout(poll, 1000);
  }

  refreshCharts();
  const auditShown = root.querySelector('[data-field="audit"] .checks') !== null;
  if (!(root.dataset.finished === "true" && auditShown)) setTimeout(poll, 1000);
})();

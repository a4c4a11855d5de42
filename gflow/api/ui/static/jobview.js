/* gflow dashboard: one job's page: details, why it waits or failed, its attempts and a live tail of its log. */
"use strict";
(function () {
  const GF = (window.GF = window.GF || {});
  const $ = (id) => document.getElementById(id);
  const LOG_KEEP = 1 << 20;        // characters of log kept on screen
  // A log grows without events, so while the job runs its new bytes are read every second
  // (only the bytes after the last read).
  const LOG_POLL_MS = 1000;
  const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g;

  let current = null;              // the id of the job shown, or null on the queue page
  let timeCell = null;             // its "ran"/"waited" value, refreshed every second
  const asked = new Set();         // dependencies already requested (no request loops)
  const log = { offset: null, timer: null, busy: false, chars: 0, lastRead: false };

  GF.showJob = function (id) {
    if (current !== id) {
      current = id;
      asked.clear();
      resetLog();
      $("job-details").textContent = "";
      $("job-actions").textContent = "";
      $("job-state").textContent = "";
      $("job-why").hidden = true;
      $("job-title").textContent = `Job ${id}`;
      document.title = `gflow · job ${id}`;
    }
    const job = GF.jobs.get(id);
    if (job) render(job);
    // Read it afresh: the page's list holds only recent history.
    GF.refreshJobs([id]);
  };
  GF.hideJob = function () { current = null; timeCell = null; resetLog(); };
  GF.onJob = function (job) {
    if (current === null) return;
    const cur = GF.jobs.get(current);
    if (job.id === current) render(job);
    else if (cur && deps(cur).includes(job.id)) render(cur);
    else if (cur && (cur.redone_from === job.id || job.redone_from === current)) render(cur);
  };
  GF.onResync = function () { if (current !== null) GF.showJob(current); };
  GF.onTick = function () {
    const job = current !== null && GF.jobs.get(current);
    if (job && timeCell && GF.ACTIVE.has(job.state)) timeCell.textContent = timeText(job);
  };

  function deps(job) {
    const ids = (job.depends_on_ids || []).slice();
    if (job.depends_on !== null && job.depends_on !== undefined && !ids.includes(job.depends_on)) ids.push(job.depends_on);
    return ids;
  }
  function timeText(job) {
    const t = GF.elapsed(job);
    return t.secs === null ? "" : `${t.label} ${GF.fmtDur(t.secs)}`;
  }
  function link(id, text) {
    const a = GF.el("a", "joblink", text || `#${id}`);
    a.href = `/ui/jobs/${id}`;
    a.dataset.nav = "job";
    return a;
  }
  function mb(v) { return v === null || v === undefined ? "" : v >= 1024 ? `${(v / 1024).toFixed(1)} GiB` : `${v} MiB`; }

  // One plain sentence: why it waits, how it ended.
  function explain(job) {
    // A bare "exit code N" is said once, with the state.
    const bare = /^exit code -?\d+$/.test(job.reason_detail || "");
    const detail = job.reason_detail && !bare ? ` ${job.reason_detail}.` : "";
    const waitingOn = deps(job).filter((d) => { const j = GF.jobs.get(d); return !j || j.state !== "Finished"; });
    const reason = GF.reasonText(job);
    switch (job.state) {
      case "Queued":
        if (waitingOn.length) return `Waiting for ${job.dependency_mode === "Any" ? "one of" : ""} job(s) ${waitingOn.map((d) => `#${d}`).join(", ")} to finish.${detail}`;
        return `Queued.${detail || " Waiting for a free slot."}`;
      case "Hold": return `Held: it will not start until it is released.${detail}`;
      case "Running": return `Running${job.gpu_ids && job.gpu_ids.length ? ` on GPU ${job.gpu_ids.join(", ")}` : ""}.${detail}`;
      case "Finished": return `Finished${job.exit_code !== null && job.exit_code !== undefined ? ` (exit code ${job.exit_code})` : ""}.${detail}`;
      // The daemon's detail ("exit code 3", "killed: memory ...") says it best when present.
      case "Failed":
        if (job.reason_detail) return `Failed: ${job.reason_detail}.${reason ? ` (${reason})` : ""}`;
        return `Failed${job.exit_code !== null && job.exit_code !== undefined ? ` with exit code ${job.exit_code}` : ""}.${reason ? ` (${reason})` : ""}`;
      case "Timeout": return `Stopped at its time limit${job.time_limit ? ` of ${GF.fmtDur(job.time_limit.secs)}` : ""}.${detail}`;
      case "Cancelled":
        if (job.reason && job.reason.DependencyFailed) return `Cancelled because job #${job.reason.DependencyFailed} did not finish.`;
        return `Cancelled${reason === "CancelledByUser" ? " by its owner or an admin" : reason ? ` (${reason})` : ""}.`;
      default: return `${job.state}.${detail}`;
    }
  }

  function render(job) {
    $("job-title").textContent = `Job ${job.id} · ${GF.jobName(job)}`;
    document.title = `gflow · job ${job.id}`;
    const st = $("job-state");
    st.className = `state state-${job.state}`;
    st.textContent = job.state;
    const acts = $("job-actions");
    acts.textContent = "";
    acts.appendChild(GF.actionsFor(job));
    const why = $("job-why");
    why.textContent = explain(job);
    why.hidden = false;
    why.className = `why why-${job.state}`;

    const dl = $("job-details");
    dl.textContent = "";
    const row = (label, value) => {
      if (value === null || value === undefined || value === "") return null;
      dl.appendChild(GF.el("dt", null, label));
      const dd = GF.el("dd");
      if (value instanceof Node) dd.appendChild(value); else dd.textContent = String(value);
      dl.appendChild(dd);
      return dd;
    };
    row("State", `${job.state} (${GF.stateCode(job.state)})`);
    row("Reason", GF.reasonText(job));
    row("Detail", job.reason_detail);
    row("Exit code", job.exit_code);
    row("User", job.submitted_by);
    row("Project", job.project);
    row(job.script ? "Script" : "Command", job.script || job.command);
    row("Run dir", job.run_dir);
    row("Conda env", job.conda_env);
    const gpus = `${job.gpus}${job.gpu_ids && job.gpu_ids.length ? ` on [${job.gpu_ids.join(", ")}]` : ""}` +
      `${job.gpu_sharing_mode === "Shared" ? `, shared (${mb(job.gpu_memory_limit_mb)})` : ""}`;
    row("GPUs", gpus);
    row("Memory limit", mb(job.memory_limit_mb));
    row("Time limit", job.time_limit ? GF.fmtDur(job.time_limit.secs) : "");
    row("Priority", job.priority);
    const dlist = deps(job);
    if (dlist.length) {
      const span = GF.el("span");
      const missing = [];
      dlist.forEach((d, k) => {
        const dj = GF.jobs.get(d);
        if (!dj) missing.push(d);
        if (k) span.appendChild(document.createTextNode(", "));
        span.appendChild(link(d));
        span.appendChild(document.createTextNode(dj ? ` ${dj.state}` : ""));
      });
      span.appendChild(document.createTextNode(` · ${job.dependency_mode === "Any" ? "any" : "all"} must finish` +
        `${job.auto_cancel_on_dependency_failure ? "; cancelled if one fails" : ""}`));
      row("Depends on", span);
      const fresh = missing.filter((d) => !asked.has(d));
      if (fresh.length) { fresh.forEach((d) => asked.add(d)); GF.refreshJobs(fresh); }
    }
    // Attempts: the redo chain, as far as this page knows it.
    const later = [];
    for (const j of GF.jobs.values()) if (j.redone_from === job.id) later.push(j.id);
    if (job.redone_from || later.length) {
      const span = GF.el("span");
      if (job.redone_from) { span.appendChild(document.createTextNode("redo of ")); span.appendChild(link(job.redone_from)); }
      if (later.length) {
        span.appendChild(document.createTextNode(`${job.redone_from ? "; " : ""}redone as `));
        later.sort((a, b) => a - b).forEach((id, k) => { if (k) span.appendChild(document.createTextNode(", ")); span.appendChild(link(id)); });
      }
      row("Attempts", span);
    }
    if (job.task_id !== null && job.task_id !== undefined) row("Array task", job.task_id);
    if (job.group_id) row("Group", `${job.group_id}${job.max_concurrent ? ` (at most ${job.max_concurrent} at once)` : ""}`);
    const params = Object.entries(job.parameters || {}).map(([k, v]) => `${k}=${v}`).join(" ");
    row("Parameters", params);
    row("Run name", job.run_name);
    row("Submitted", GF.fmtTime(GF.secs(job.submitted_at)));
    row("Started", GF.fmtTime(GF.secs(job.started_at)));
    row("Ended", GF.fmtTime(GF.secs(job.finished_at)));
    timeCell = row("Time", timeText(job));
    // Keys newer daemons add (GPU use, attempts...) are shown as they come.
    const known = new Set(["id", "script", "command", "gpus", "conda_env", "run_dir", "priority", "depends_on",
      "depends_on_ids", "dependency_mode", "auto_cancel_on_dependency_failure", "task_id", "gpu_sharing_mode",
      "gpu_memory_limit_mb", "time_limit", "memory_limit_mb", "submitted_by", "redone_from", "auto_close_tmux",
      "parameters", "group_id", "max_concurrent", "run_name", "project", "state", "gpu_ids", "submitted_at",
      "started_at", "finished_at", "reason", "exit_code", "reason_detail", "env", "umask"]);
    for (const [k, v] of Object.entries(job)) {
      if (known.has(k) || v === null || v === undefined) continue;
      row(k.replace(/_/g, " "), typeof v === "object" ? JSON.stringify(v) : v);
    }
    wantLog(job);
  }

  // --- the log tail ---------------------------------------------------------------------
  function resetLog() {
    clearTimeout(log.timer);
    Object.assign(log, { offset: null, timer: null, chars: 0, lastRead: false });
    $("log").textContent = "";
    $("log-note").textContent = "";
  }
  function wantLog(job) {
    if (job.state === "Queued" || job.state === "Hold") {
      if (log.offset === null) $("log-note").textContent = "no output yet: the job has not started";
      return;
    }
    if (!log.timer && !log.busy) readLog();
  }
  function append(text) {
    if (!text) return;
    const pre = $("log");
    const follow = $("log-follow").checked;
    pre.appendChild(document.createTextNode(text.replace(ANSI, "")));
    log.chars += text.length;
    if (log.chars > LOG_KEEP * 1.5) {
      pre.textContent = pre.textContent.slice(-LOG_KEEP);
      log.chars = LOG_KEEP;
    }
    if (follow) pre.scrollTop = pre.scrollHeight;
  }
  function fmtBytes(n) { return n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} bytes`; }
  function schedule(ms) { clearTimeout(log.timer); log.timer = setTimeout(readLog, ms); }

  async function readLog() {
    log.timer = null;
    const id = current;
    if (id === null) return;
    log.busy = true;
    const q = log.offset === null ? "" : `?offset=${log.offset}`;
    const r = await GF.api("GET", `/ui/api/jobs/${id}/log${q}`);
    log.busy = false;
    if (id !== current) return;
    let more = false;
    const b = r.body;
    if (r.ok && b && b.available) {
      if (log.offset !== null && b.size < log.offset) {     // rewritten: start over
        resetLog();
        schedule(0);
        return;
      }
      if (log.offset === null && b.truncated) append(`[… the first ${fmtBytes(b.offset)} are not shown]\n`);
      append(b.text);
      log.offset = b.next_offset;
      more = b.next_offset < b.size && b.text.length > 0;
      $("log-note").textContent = fmtBytes(b.size);
    } else if (r.ok && b && b.refused) {
      $("log-note").textContent = `log: ${b.refused}`;
      return;
    } else if (r.ok && b) {
      $("log-note").textContent = "no output yet";
    } else {
      $("log-note").textContent = `log: ${r.message}`;
      return;
    }
    const job = GF.jobs.get(id);
    if (more) schedule(0);
    else if (job && job.state === "Running") schedule(LOG_POLL_MS);
    else if (job && GF.FINAL.has(job.state) && !log.lastRead) {
      // Output written just before the exit may land after the state change: once more.
      log.lastRead = true;
      schedule(LOG_POLL_MS);
    }
  }
})();

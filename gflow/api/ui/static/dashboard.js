/* gflow dashboard: the live queue and the GPUs, kept current by the /events stream (no polling). */
"use strict";
(function () {
  const GF = (window.GF = window.GF || {});
  const $ = (id) => document.getElementById(id);
  const ACTIVE = new Set(["Queued", "Hold", "Running"]);
  const FINAL = new Set(["Finished", "Failed", "Cancelled", "Timeout"]);
  const CODES = { Queued: "PD", Hold: "H", Running: "R", Finished: "CD", Failed: "F",
                  Cancelled: "CA", Timeout: "TO" };
  const PAGE = 200;               // rows added to the table at a time
  const JOB_EVENTS = ["job_submitted", "job_updated", "job_started", "job_completed",
                      "job_failed", "job_cancelled", "job_timeout", "job_held", "job_released"];
  const GPU_EVENTS = ["gpu_available", "gpu_idle_held", "reservation_created",
                      "reservation_cancelled"];
  const ENDS_HOLDING = new Set(["job_started", "job_completed", "job_failed", "job_cancelled",
                                "job_timeout"]);

  const jobs = new Map();         // id -> the job's wire JSON, as last read
  let me = { anonymous: true, read_only: true, admin: false, user: null };
  GF.jobs = jobs;
  GF.ACTIVE = ACTIVE;
  GF.FINAL = FINAL;
  GF.me = () => me;

  // --- small helpers -------------------------------------------------------------------
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  GF.el = el;
  GF.secs = (t) => (t ? t.secs_since_epoch + t.nanos_since_epoch / 1e9 : null);
  GF.fmtDur = function (s) {
    if (s === null || s === undefined || !isFinite(s)) return "";
    s = Math.max(0, Math.floor(s));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    const hms = [h, m, sec].map((n) => String(n).padStart(2, "0")).join(":");
    return d ? `${d}d ${hms}` : hms;
  };
  GF.fmtTime = (s) => (s ? new Date(s * 1000).toLocaleString() : "");
  GF.reasonText = function (job) {
    const r = job.reason;
    let text = "";
    if (typeof r === "string") text = r;
    else if (r && typeof r === "object") {
      const k = Object.keys(r)[0];
      text = k === "SystemError" ? `SystemError: ${r[k]}` : `${k}:${r[k]}`;
    }
    return text;
  };
  GF.why = (job) => job.reason_detail || GF.reasonText(job);
  GF.jobName = function (job) {
    if (job.run_name) return job.run_name;
    if (job.script) return job.script.split("/").pop();
    return job.command || "";
  };
  GF.stateCode = (s) => CODES[s] || s;
  GF.canChange = (job) => !me.read_only && (me.admin || job.submitted_by === me.user);
  GF.elapsed = function (job) {
    const now = Date.now() / 1000;
    const sub = GF.secs(job.submitted_at), st = GF.secs(job.started_at);
    const fin = GF.secs(job.finished_at);
    if (st) return { label: "ran", secs: (fin || now) - st };
    if (ACTIVE.has(job.state) && sub) return { label: "waited", secs: now - sub };
    return { label: "", secs: null };
  };

  GF.api = async function (method, path, body) {
    const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      // JSON only: the daemon refuses other bodies (what a cross-site form would send).
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body === undefined ? {} : body);
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      return { ok: false, status: 0, body: null, message: "the daemon is not reachable" };
    }
    const text = await resp.text();
    let data = text;
    try { data = text ? JSON.parse(text) : null; } catch (e) { /* plain text answer */ }
    const message = data && typeof data === "object" && data.error ? data.error
      : (typeof data === "string" && data.trim()) || `HTTP ${resp.status}`;
    return { ok: resp.ok, status: resp.status, body: data, message };
  };

  let toastTimer = null;
  GF.toast = function (msg, isError) {
    const t = $("toast");
    t.textContent = msg;
    t.className = "toast" + (isError ? " toast-error" : "");
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, isError ? 8000 : 3000);
  };

  // --- actions: shown only for what the caller may change ------------------------------
  GF.actionsFor = function (job) {
    const box = el("span", "act-box");
    if (!GF.canChange(job)) return box;
    const acts = [];
    if (ACTIVE.has(job.state)) acts.push("cancel");
    if (job.state === "Queued") acts.push("hold");
    if (job.state === "Hold") acts.push("release");
    for (const action of acts) {
      const b = el("button", `act act-${action}`, action);
      b.type = "button";
      b.dataset.action = action;
      b.dataset.job = job.id;
      b.title = `${action} job ${job.id}`;
      box.appendChild(b);
    }
    return box;
  };

  async function runAction(btn) {
    const id = Number(btn.dataset.job), action = btn.dataset.action;
    // Cancelling cannot be undone: the first click arms the button, the second acts.
    if (action === "cancel" && !btn.classList.contains("armed")) {
      btn.classList.add("armed");
      btn.textContent = "confirm cancel";
      setTimeout(() => {
        if (btn.isConnected && !btn.disabled) {
          btn.classList.remove("armed");
          btn.textContent = "cancel";
        }
      }, 4000);
      return;
    }
    btn.disabled = true;
    const r = await GF.api("POST", `/jobs/${id}/${action}`);
    if (r.ok) GF.toast(`job ${id}: ${action} sent`);
    else {
      btn.disabled = false;
      GF.toast(`job ${id}: ${action} refused: ${r.message}`, true);
    }
  }

  document.addEventListener("click", (e) => {
    const btn = e.target.closest("button.act");
    if (btn) { e.preventDefault(); runAction(btn); return; }
    const a = e.target.closest("a[data-nav]");
    if (a && !e.ctrlKey && !e.metaKey && !e.shiftKey && e.button === 0) {
      e.preventDefault();
      history.pushState(null, "", a.getAttribute("href"));
      route();
    }
  });

  // --- the queue table: rows for the newest matching jobs, extended on demand ----------
  const view = { order: [], shown: 0, rows: new Map() };   // order: matching ids, newest first
  const running = new Set();                               // rendered ids whose time ticks

  function filters() {
    return { user: $("f-user").value, state: $("f-state").value, project: $("f-project").value };
  }
  function matches(job, f) {
    if (f.user && job.submitted_by !== (f.user === "@me" ? me.user : f.user)) return false;
    if (f.state === "active" && !ACTIVE.has(job.state)) return false;
    if (f.state === "final" && !FINAL.has(job.state)) return false;
    if (f.state && f.state !== "active" && f.state !== "final" && job.state !== f.state) return false;
    if (f.project === "-" && job.project) return false;
    if (f.project && f.project !== "-" && job.project !== f.project) return false;
    return true;
  }
  function position(id) {        // first index whose id is smaller (order is descending)
    let lo = 0, hi = view.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (view.order[mid] > id) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function jobLink(job, text) {
    const a = el("a", "joblink", text);
    a.href = `/ui/jobs/${job.id}`;
    a.dataset.nav = "job";
    return a;
  }
  function timeText(job) {
    const t = GF.elapsed(job);
    return t.secs === null ? "" : `${t.label} ${GF.fmtDur(t.secs)}`;
  }
  function makeRow(job) {
    const tr = el("tr", `st-${job.state}`);
    tr.dataset.id = job.id;
    const idCell = el("td", "num");
    idCell.appendChild(jobLink(job, job.id));
    tr.appendChild(idCell);
    const name = el("td", "name");
    name.appendChild(jobLink(job, GF.jobName(job)));
    name.title = job.command || job.script || "";
    tr.appendChild(name);
    tr.appendChild(el("td", "user", job.submitted_by));
    tr.appendChild(el("td", "project", job.project || ""));
    const st = el("td", "state-cell");
    st.appendChild(el("span", `state state-${job.state}`, GF.stateCode(job.state)));
    st.title = job.state;
    tr.appendChild(st);
    const gpus = job.gpu_ids && job.gpu_ids.length ? `${job.gpus} [${job.gpu_ids.join(",")}]`
      : String(job.gpus || 0);
    tr.appendChild(el("td", "gpucol", gpus));
    tr.appendChild(el("td", "time", timeText(job)));
    const why = el("td", "reason", GF.why(job));
    why.title = GF.why(job);
    tr.appendChild(why);
    const acts = el("td", "actions");
    acts.appendChild(GF.actionsFor(job));
    tr.appendChild(acts);
    if (ACTIVE.has(job.state)) running.add(job.id);
    else running.delete(job.id);
    return tr;
  }

  function updateCount() {
    const n = view.order.length;
    $("count").textContent = n > view.shown ? `showing ${view.shown} of ${n}` : `${n} jobs`;
    $("more").hidden = view.shown >= n;
    $("empty").hidden = n > 0;
  }
  function showMore() {
    const frag = document.createDocumentFragment();
    const end = Math.min(view.order.length, view.shown + PAGE);
    for (let i = view.shown; i < end; i++) {
      const job = jobs.get(view.order[i]);
      const tr = makeRow(job);
      view.rows.set(job.id, tr);
      frag.appendChild(tr);
    }
    $("jobs-body").appendChild(frag);
    view.shown = end;
    updateCount();
  }
  function rebuild() {
    const f = filters();
    $("jobs-body").textContent = "";
    view.rows.clear();
    running.clear();
    view.order = [];
    for (const job of jobs.values()) if (matches(job, f)) view.order.push(job.id);
    view.order.sort((a, b) => b - a);
    view.shown = 0;
    showMore();
  }
  // One job changed: at most one row is added, replaced or removed (no full re-render).
  function place(job) {
    const f = filters(), id = job.id, want = matches(job, f);
    const i = position(id), present = view.order[i] === id;
    const tr = view.rows.get(id);
    if (want && present) {
      if (tr) {
        const fresh = makeRow(job);
        tr.replaceWith(fresh);
        view.rows.set(id, fresh);
      }
    } else if (want) {
      view.order.splice(i, 0, id);
      if (i < view.shown || view.shown === view.order.length - 1) {
        const row = makeRow(job), next = view.rows.get(view.order[i + 1]);
        $("jobs-body").insertBefore(row, i < view.shown ? next : null);
        view.rows.set(id, row);
        view.shown += 1;
      }
    } else if (present) {
      view.order.splice(i, 1);
      if (tr) {
        tr.remove();
        view.rows.delete(id);
        running.delete(id);
        view.shown -= 1;
      }
    }
  }

  const seen = { user: new Set(), project: new Set() };
  function learnOptions(job) {
    for (const [key, value] of [["user", job.submitted_by], ["project", job.project]]) {
      if (!value || seen[key].has(value)) continue;
      seen[key].add(value);
      const sel = $(`f-${key}`), opt = el("option", null, value);
      opt.value = value;
      // Keep the list sorted: insert before the first larger name.
      const fixed = new Set(["", "@me", "-"]);
      const before = Array.from(sel.options).find((o) => !fixed.has(o.value) && o.value > value);
      sel.insertBefore(opt, before || null);
    }
  }

  function upsert(job) {
    jobs.set(job.id, job);
    learnOptions(job);
    place(job);
    if (GF.onJob) GF.onJob(job);
  }

  // --- the event stream and what it triggers ------------------------------------------
  const pending = new Set();
  let flushTimer = null, flushing = false, loading = false, es = null, retryMs = 1000;

  function scheduleFlush(ms) {
    if (!flushTimer) flushTimer = setTimeout(flush, ms === undefined ? 100 : ms);
  }
  // Events name jobs; their full records are read in batches, so a burst of a thousand
  // submissions is a handful of requests, not a thousand.
  async function flush() {
    flushTimer = null;
    if (flushing || loading) { scheduleFlush(); return; }
    const ids = Array.from(pending).slice(0, 500);
    if (!ids.length) return;
    ids.forEach((i) => pending.delete(i));
    flushing = true;
    const r = await GF.api("GET", `/ui/api/jobs?ids=${ids.join(",")}`);
    flushing = false;
    if (r.ok && Array.isArray(r.body)) {
      r.body.forEach(upsert);
      updateCount();
    } else {
      ids.forEach((i) => pending.add(i));
      scheduleFlush(2000);
      return;
    }
    if (pending.size) scheduleFlush(0);
  }
  GF.refreshJobs = function (ids) { ids.forEach((i) => pending.add(i)); scheduleFlush(0); };

  async function resync() {
    loading = true;
    const r = await GF.api("GET", "/ui/api/jobs");
    loading = false;
    if (!r.ok || !r.body) { GF.toast(`cannot list jobs: ${r.message}`, true); return; }
    jobs.clear();
    for (const job of r.body.jobs) { jobs.set(job.id, job); learnOptions(job); }
    $("gpu-note").textContent = "";
    rebuild();
    if (GF.onResync) GF.onResync();
    loadInfo();
    if (pending.size) scheduleFlush(0);
  }

  function setLive(state) {
    const pill = $("live");
    pill.className = `pill pill-${state === "live" ? "ok" : state === "offline" ? "bad" : "wait"}`;
    pill.textContent = state;
  }
  function connect() {
    es = new EventSource("/events");
    // Every (re)connection may have missed events: read the state afresh.
    es.addEventListener("open", () => { setLive("live"); retryMs = 1000; resync(); });
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED) {
        // Refused (too many streams) or gone: try again later, backing off.
        setLive("offline");
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      } else setLive("reconnecting");
    });
    const onJob = (e) => {
      let data;
      try { data = JSON.parse(e.data); } catch (err) { return; }
      if (data.job && data.job.id) { pending.add(data.job.id); scheduleFlush(); }
      if (ENDS_HOLDING.has(e.type)) scheduleInfo();
    };
    JOB_EVENTS.forEach((n) => es.addEventListener(n, onJob));
    GPU_EVENTS.forEach((n) => es.addEventListener(n, () => scheduleInfo()));
    es.addEventListener("scheduler_online", () => resync());
  }
  window.addEventListener("pagehide", () => { if (es) es.close(); });

  // --- GPUs ---------------------------------------------------------------------------
  let infoTimer = null;
  function scheduleInfo() { if (!infoTimer) infoTimer = setTimeout(loadInfo, 300); }
  async function loadInfo() {
    infoTimer = null;
    const r = await GF.api("GET", "/info");
    if (r.ok && r.body) renderGpus(r.body);
  }
  // /info's GPU keys differ by daemon version: read whichever names are present.
  function pick(g, names) {
    for (const n of names) if (g[n] !== undefined && g[n] !== null) return g[n];
    return null;
  }
  function bar(label, value, max, unit) {
    const wrap = el("div", "bar");
    const pct = max ? Math.max(0, Math.min(100, (100 * value) / max)) : 0;
    const fill = el("div", "bar-fill" + (pct > 90 ? " bar-hot" : ""));
    fill.style.width = `${pct.toFixed(1)}%`;
    wrap.appendChild(fill);
    const text = unit === "%" ? `${label} ${Math.round(value)}%`
      : `${label} ${(value / 1024).toFixed(1)} / ${(max / 1024).toFixed(1)} GiB`;
    wrap.appendChild(el("span", "bar-text", text));
    wrap.title = text;
    return wrap;
  }
  function renderGpus(info) {
    const box = $("gpus");
    box.textContent = "";
    const holders = new Map();
    for (const job of jobs.values()) {
      if (job.state !== "Running" || !job.gpu_ids) continue;
      for (const g of job.gpu_ids) {
        if (!holders.has(g)) holders.set(g, []);
        holders.get(g).push(job);
      }
    }
    const allowed = info.allowed_gpu_indices;
    const reserved = new Map();
    for (const r of info.reservations || []) {
      for (const g of r.gpu_indices || []) reserved.set(g, r);
    }
    if (!info.gpus || !info.gpus.length) box.appendChild(el("p", "muted", "No GPUs detected."));
    for (const g of info.gpus || []) {
      const card = el("div", "gpu");
      const jobsOn = holders.get(g.index) || [];
      const off = Array.isArray(allowed) && !allowed.includes(g.index);
      // Newer daemons say the state (free, job, shared, foreign, error); else derive it.
      const said = { free: "free", job: "busy", shared: "busy", foreign: "foreign", error: "error" }[g.state];
      let state = said || (g.available ? "free" : jobsOn.length ? "busy"
        : g.reason === "Unmanaged" ? "foreign" : "busy");
      if (off) state = "off";
      card.classList.add(`gpu-${state}`);
      const head = el("div", "gpu-head");
      head.appendChild(el("strong", null, `GPU ${g.index}`));
      const label = { free: "free", busy: g.state === "shared" ? "shared" : "in use",
                      foreign: "foreign process", off: "not used by gflow", error: "error" }[state];
      head.appendChild(el("span", `badge badge-${state}`, label));
      if (g.error) head.title = g.error;
      card.appendChild(head);
      const total = pick(g, ["memory_total_mb", "total_memory_mb", "memory_mb"]);
      const used = pick(g, ["memory_used_mb", "used_memory_mb"]);
      const util = pick(g, ["utilization_percent", "utilization", "util_percent", "gpu_util"]);
      let readings = 0;
      if (total && used !== null) { card.appendChild(bar("mem", used, total, "MB")); readings++; }
      else if (total && g.shared_memory_mb !== undefined) {
        card.appendChild(bar("claimed", g.shared_memory_mb, total, "MB"));
        readings++;
      }
      if (util !== null) { card.appendChild(bar("util", util, 100, "%")); readings++; }
      // Simulated GPUs (and daemons without NVML readings) have none: say so once.
      if (!readings) card.appendChild(el("div", "bar bar-none", "no memory or utilisation reading"));
      const who = el("ul", "holders");
      for (const job of jobsOn) {
        const li = el("li");
        li.appendChild(jobLink(job, `job ${job.id}`));
        li.appendChild(document.createTextNode(` ${job.submitted_by} · ${GF.jobName(job)}`));
        who.appendChild(li);
      }
      for (const p of g.processes || g.holders || []) {
        if (p.job_id !== null && p.job_id !== undefined) continue;   // listed above
        if (p.ignored) continue;                                     // gctl gpu-process ignore
        const used = p.used_mb ?? p.memory_used_mb;
        const mem = used ? ` · ${(used / 1024).toFixed(1)} GiB` : "";
        const age = p.age_secs ? ` · ${GF.fmtDur(p.age_secs)}` : "";
        const li = el("li", "foreign" + (p.idle ? " idle" : ""),
          `pid ${p.pid} ${p.user || ""} ${p.command || ""}${mem}${age}${p.idle ? " · idle" : ""}`);
        li.title = p.release || li.textContent;
        who.appendChild(li);
      }
      if (!jobsOn.length && g.reason === "Unmanaged" && !(g.processes || g.holders || []).length) {
        who.appendChild(el("li", "foreign", "a process outside gflow"));
      }
      const r = reserved.get(g.index);
      if (r) who.appendChild(el("li", "muted", `reserved for ${r.user}${r.active ? " now" : ""}`));
      card.appendChild(who);
      box.appendChild(card);
    }
    const counted = (info.reservations || []).filter((r) => !r.gpu_indices);
    $("gpu-note").textContent = counted.map((r) =>
      `${r.gpu_count} GPU(s) reserved for ${r.user}${r.active ? " now" : ""}`).join("; ");
  }
  GF.loadInfo = loadInfo;

  // --- routing, filters and start-up ----------------------------------------------------
  function route() {
    const m = location.pathname.match(/\/ui\/jobs\/(\d+)\/?$/);
    $("queue-view").hidden = !!m;
    $("job-view").hidden = !m;
    if (m && GF.showJob) GF.showJob(Number(m[1]));
    else if (GF.hideJob) { GF.hideJob(); document.title = "gflow dashboard"; }
  }
  window.addEventListener("popstate", route);

  function readFilters() {
    const q = new URLSearchParams(location.search);
    for (const key of ["user", "state", "project"]) {
      const v = q.get(key);
      if (!v) continue;
      const sel = $(`f-${key}`);
      if (!Array.from(sel.options).some((o) => o.value === v)) {
        const opt = el("option", null, v);
        opt.value = v;
        sel.appendChild(opt);
        seen[key] && seen[key].add(v);
      }
      sel.value = v;
    }
  }
  function filtersChanged() {
    const q = new URLSearchParams();
    const f = filters();
    for (const k of Object.keys(f)) if (f[k]) q.set(k, f[k]);
    const s = q.toString();
    history.replaceState(null, "", location.pathname + (s ? `?${s}` : ""));
    rebuild();
  }

  function tick() {   // runtimes and waits of the rows on screen, once a second
    if (document.hidden) return;             // a background tab does no work
    for (const id of running) {
      const tr = view.rows.get(id), job = jobs.get(id);
      if (!tr || !job) { running.delete(id); continue; }
      tr.querySelector("td.time").textContent = timeText(job);
    }
    if (GF.onTick) GF.onTick();
  }

  async function start() {
    const r = await GF.api("GET", "/ui/whoami");
    if (r.ok && r.body) me = r.body;
    const who = $("whoami");
    if (me.read_only) {
      who.textContent = "read-only: gflowd could not tell who you are";
      who.classList.add("who-anon");
    } else {
      who.textContent = `${me.user}${me.admin ? " (admin)" : ""}`;
      const mine = el("option", null, `me (${me.user})`);
      mine.value = "@me";
      $("f-user").insertBefore(mine, $("f-user").options[1] || null);
    }
    readFilters();
    for (const key of ["user", "state", "project"]) $(`f-${key}`).addEventListener("change", filtersChanged);
    $("more-btn").addEventListener("click", showMore);
    // Rows are added as the end of the table comes into view (a thousand jobs stay cheap).
    if ("IntersectionObserver" in window) {
      new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) showMore();
      }).observe($("more"));
    }
    route();
    connect();
    setInterval(tick, 1000);
  }
  document.addEventListener("DOMContentLoaded", start);
})();

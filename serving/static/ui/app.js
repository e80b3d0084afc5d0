/* Sentiflow web page. Plain JavaScript, no libraries, no network access beyond this server.
 *
 * Every URL is BASE + path, where BASE is the server's script root (data-base on <body>), so the page
 * works behind a path prefix. The admin and reviewer tokens live in sessionStorage only (this tab), never in
 * the page.
 * Data is put on the page with textContent (never innerHTML), so texts and errors cannot inject markup.
 */
(function () {
  "use strict";

  const body = document.body;
  const BASE = body.dataset.base || "";
  const MAX_CHARS = parseInt(body.dataset.maxTextChars, 10);
  const MAX_TEXTS = parseInt(body.dataset.maxTexts, 10);
  const TOKEN_KEY = "sentiflow-admin-token";
  const REQUESTER_KEY = "sentiflow-requested-by";
  const REVIEWER_TOKEN_KEY = "sentiflow-reviewer-token";
  const REVIEWER_NAME_KEY = "sentiflow-reviewer";
  const $ = (id) => document.getElementById(id);

  const state = {
    model: null,          // GET /model body, or null when nothing is served
    versions: null,       // GET /ui/api/versions body
    sort: { key: "version", dir: -1 },
    deploying: false,
  };

  // --- small helpers -------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body || {};
    }
  }

  /** fetch BASE+path, parse JSON; a non-2xx answer throws ApiError with the server's message. */
  async function api(path, options) {
    let response;
    try {
      response = await fetch(BASE + path, options);
    } catch (err) {
      throw new ApiError(0, "Cannot reach the model server (" + err.message + "). Is it running?");
    }
    let data = null;
    const text = await response.text();
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!response.ok) {
      const message = (data && data.message) ||
        "The server answered " + response.status + " " + response.statusText + ".";
      throw new ApiError(response.status, message, data);
    }
    return data;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function showError(id, message) {
    const box = $(id);
    if (message) { box.textContent = message; box.hidden = false; }
    else { box.textContent = ""; box.hidden = true; }
  }

  function fmtNumber(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    if (Number.isInteger(value)) return String(value);
    return Math.abs(value) >= 100 ? value.toFixed(1) : value.toFixed(4);
  }

  function fmtDate(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  function fmtDay(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleDateString();
  }

  function pct(p) { return (100 * p).toFixed(1) + "%"; }

  // --- deployed model card -------------------------------------------------------------------------
  async function loadModel() {
    const box = $("model-body");
    const pill = $("serving-pill");
    try {
      state.model = await api("/model");
    } catch (err) {
      state.model = null;
      box.replaceChildren(el("p", { class: "error", text: err.status === 503
        ? "No model is being served yet. " + err.message
        : "Could not read the deployed model: " + err.message }));
      pill.textContent = err.status === 503 ? "No model deployed" : "Server problem";
      pill.className = "pill bad";
      return null;
    }
    const m = state.model;
    const deployed = m.deployed || {};
    const dl = el("dl", { class: "model" },
      el("dt", { text: "Version" }), el("dd", {}, el("span", { class: "big", id: "model-version", text: m.version })),
      el("dt", { text: "Family" }), el("dd", { text: m.family || "—" }),
      // which runtime answers, and why PyTorch does when the configured one cannot
      el("dt", { text: "Runtime" }), el("dd", { id: "model-runtime", text: (m.runtime || "—")
        + (m.runtime_source ? " (" + m.runtime_source + " file)" : "")
        + (m.runtime_fallback ? ": " + m.runtime_fallback : "") }),
      el("dt", { text: "Labels" }), el("dd", { text: (m.label_names || []).join(", ") }),
      el("dt", { text: "Follows" }), el("dd", { text: deployed.alias
        ? "alias " + deployed.alias + (deployed.version ? " (version " + deployed.version + ")" : "")
        : "—" }),
      el("dt", { text: "Loaded by this worker" }), el("dd", { text: fmtDate(m.loaded_at) }),
    );
    for (const [name, value] of Object.entries(m.metrics || {})) {
      dl.append(el("dt", { text: name }), el("dd", { text: fmtNumber(value) }));
    }
    box.replaceChildren(dl);
    pill.textContent = "Serving version " + m.version;
    pill.className = "pill ok";
    return m;
  }

  // --- predict and feedback ------------------------------------------------------------------------
  function textsFromInput() {
    const raw = $("predict-text").value;
    if ($("predict-lines").checked) {
      return raw.split(/\r?\n/).map((t) => t.trim()).filter((t) => t.length > 0);
    }
    return raw.trim() ? [raw] : [];
  }

  function validate(texts) {
    if (texts.length === 0) {
      return "The text is empty: type or paste something to classify first.";
    }
    if (texts.length > MAX_TEXTS) {
      return "Too many lines: " + texts.length + " texts, the limit is " + MAX_TEXTS + " at once.";
    }
    for (let i = 0; i < texts.length; i++) {
      if (texts[i].length > MAX_CHARS) {
        const which = texts.length > 1 ? "Line " + (i + 1) : "The text";
        return which + " is too long: " + texts[i].length + " characters, the limit is " + MAX_CHARS + ".";
      }
    }
    return null;
  }

  async function predict(event) {
    event.preventDefault();
    showError("predict-error", null);
    const texts = textsFromInput();
    const problem = validate(texts);
    if (problem) {
      showError("predict-error", problem);
      $("predict-text").focus();
      return;
    }
    const button = $("predict-btn");
    button.disabled = true;
    button.textContent = "Predicting…";
    try {
      const data = await api("/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ texts: texts }),
      });
      renderPredictions(texts, data);
    } catch (err) {
      showError("predict-error", "Prediction failed: " + err.message);
    } finally {
      button.disabled = false;
      button.textContent = "Predict";
    }
  }

  function renderPredictions(texts, data) {
    const list = $("predictions");
    list.replaceChildren();
    data.predictions.forEach((p, i) => {
      const labels = Object.keys(p.scores);
      const bars = labels.map((label) => {
        const score = p.scores[label];
        return el("div", { class: "bar-row" },
          el("span", { text: label }),
          el("div", { class: "bar", role: "img", "aria-label": label + " " + pct(score) },
            el("span", { class: label, style: "width:" + (100 * score).toFixed(1) + "%" })),
          el("span", { class: "pct", text: pct(score) }));
      });
      const item = el("li", { class: "prediction", "data-label": p.label },
        el("p", { class: "text", text: texts[i].length > 300 ? texts[i].slice(0, 300) + "…" : texts[i] }),
        el("p", { class: "label " + p.label }, "Prediction: ", el("span", { class: "predicted", text: p.label })),
        ...bars,
        feedbackControls(texts[i], p, labels, data.model_version));
      list.append(item);
    });
    const note = el("li", { class: "muted", text: "Answered by model version " + data.model_version + "." });
    list.append(note);
  }

  function feedbackControls(text, prediction, labels, version) {
    const box = el("div", { class: "flag", role: "group", "aria-label": "Was this prediction right?" });
    const others = labels.filter((l) => l !== prediction.label);

    async function send(correct, trueLabel) {
      box.querySelectorAll("button, select").forEach((b) => { b.disabled = true; });
      try {
        const record = await api("/feedback", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({
            prediction_id: prediction.prediction_id,  // signed by /predict: feedback must cite it
            text: text,
            predicted_label: prediction.label,
            correct: correct,
            true_label: correct ? prediction.label : trueLabel,
            model_version: String(version),
          }),
        });
        box.replaceChildren(el("span", { class: "done", role: "status",
          text: correct ? "Thanks — marked correct (#" + record.id + ")."
            : "Thanks — marked wrong, the right label is “" + trueLabel + "” (#" + record.id + ")." }));
        loadFeedback();
      } catch (err) {
        box.querySelectorAll("button, select").forEach((b) => { b.disabled = false; });
        box.append(el("span", { class: "error", role: "alert", text: "Feedback not stored: " + err.message }));
      }
    }

    function askRightLabel() {
      const id = "right-" + Math.random().toString(36).slice(2);
      const select = el("select", { id: id });
      for (const l of others) select.append(el("option", { value: l, text: l }));
      const confirm = el("button", { type: "button", class: "small", text: "Send",
        onclick: () => send(false, select.value) });
      box.replaceChildren(el("label", { for: id, text: "Right label:" }), select, confirm);
      select.focus();
    }

    box.append(
      el("span", { text: "Is this right?" }),
      el("button", { type: "button", class: "small secondary", text: "Correct", onclick: () => send(true) }),
      el("button", { type: "button", class: "small secondary", text: "Wrong",
        onclick: () => (others.length === 1 ? send(false, others[0]) : askRightLabel()) }));
    return box;
  }

  // --- versions table ------------------------------------------------------------------------------
  /** The registered models (one Airflow may keep several); the served one is first and chosen. */
  async function loadModels() {
    const select = $("model-select");
    try {
      const data = await api("/ui/api/models");
      const chosen = select.value || data.served_model;
      select.replaceChildren(...data.models.map((name) => el("option", { value: name,
        text: name + (name === data.served_model ? " (served)" : "") })));
      select.value = data.models.includes(chosen) ? chosen : data.served_model;
    } catch (err) {
      showError("versions-error", "Could not list the registered models: " + err.message);
    }
  }

  async function loadVersions(sortByMetric) {
    const metric = $("metric-select").value;
    const model = $("model-select").value;
    const dataset = $("dataset-select").value;
    showError("versions-error", null);
    try {
      state.versions = await api("/ui/api/versions?metric=" + encodeURIComponent(metric) +
        (model ? "&model=" + encodeURIComponent(model) : "") +
        (dataset ? "&dataset=" + encodeURIComponent(dataset) : ""),
        // with the admin token the rows carry their run ids and dataset URIs (shown on hover)
        getToken() ? { headers: { Authorization: "Bearer " + getToken() } } : undefined);
    } catch (err) {
      state.versions = null;
      showError("versions-error", "Could not list the versions: " + err.message);
      $("versions-body").replaceChildren();
      $("best-summary").textContent = "";
      $("deploy-best").disabled = true;
      return;
    }
    if (sortByMetric === true) {
      // Best first: the row the summary names is at the top of the table.
      state.sort = { key: state.versions.metric, dir: state.versions.lower_is_better ? 1 : -1 };
    } else if (!state.versions.columns.includes(state.sort.key) &&
               !["version", "family", "dataset", "gate", "created_at"].includes(state.sort.key)) {
      state.sort = { key: "version", dir: -1 };
    }
    renderVersions();
  }

  const FIXED_COLUMNS = [
    { key: "version", label: "Version", num: true },
    { key: "family", label: "Family" },
    { key: "dataset", label: "Dataset" },
  ];

  function sortValue(row, key) {
    if (key === "version") return parseInt(row.version, 10);
    if (key === "created_at") return row.created_at || null;
    if (key === "family" || key === "dataset") return row[key] || null;
    if (key === "gate") return row.decision ? gateVerdict(row.decision) : null;
    const v = row.metrics[key];
    return v === undefined ? null : v;
  }

  /** A metric name that may break after each underscore (narrow columns, no sideways scrolling). */
  function breakable(name) {
    const span = el("span", { class: "metric-name" });
    name.split("_").forEach((part, i) => {
      if (i) span.append("_", el("wbr", {}));
      span.append(part);
    });
    return span;
  }

  function gateVerdict(d) {
    if (d.comparable === "False") return d.promote === "True" ? "forced" : "not comparable";
    if (d.promote !== "True") return "kept";
    return /forced/.test(d.reason || "") ? "forced" : "promoted";
  }

  function signed(v) {
    const n = parseFloat(v);
    return Number.isNaN(n) ? "—" : (n >= 0 ? "+" : "−") + Math.abs(n).toFixed(3);
  }

  /** The behavioural cases the version failed (the gate.behaviour_failures tag: a JSON list), or none. */
  function behaviourFailures(d) {
    try {
      const list = JSON.parse(d.behaviour_failures || "[]");
      return Array.isArray(list) ? list : [];
    } catch (e) {
      return [];
    }
  }

  /** The selection gate's decision for this version's run: verdict and difference, details on demand. */
  function gateCell(d) {
    if (!d) return el("td", { class: "muted", text: "—" });
    const verdict = gateVerdict(d);
    const diff = d.difference !== undefined ? " " + signed(d.difference) : "";
    const details = el("dl", { class: "gate-detail" });
    const add = (name, value) => {
      if (value !== undefined && value !== null && value !== "") {
        details.append(el("dt", { text: name }), el("dd", { text: String(value) }));
      }
    };
    add("Metric", d.metric);
    add("This version", d.candidate_value);
    add("Champion (v" + (d.champion_version || "?") + ")", d.champion_value);
    add("Difference", d.difference);
    if (d.difference_ci_low !== undefined) {
      add("Interval (" + Math.round(100 * parseFloat(d.confidence || "0")) + "%)",
        "[" + signed(d.difference_ci_low) + ", " + signed(d.difference_ci_high) + "] " +
        (d.comparison_method || ""));
    }
    add("Scored on", d.champion_scored_on);
    if (d.behaviour_failed !== undefined) {
      add("Behaviour", d.behaviour_failed + " of " + d.behaviour_cases + " cases failed" +
        (d.champion_behaviour_failed !== undefined ? " (champion " + d.champion_behaviour_failed + ")" : ""));
    }
    add("Skipped", d.behaviour_skipped);
    add("Why", d.reason);
    const failing = behaviourFailures(d);
    if (failing.length) {
      const list = el("ul", { class: "gate-failures" });
      for (const f of failing) {
        list.append(el("li", {}, f.capability + ": “" + f.text + "” → " + f.got + " (expected " + f.expected + ")"));
      }
      const more = parseInt(d.behaviour_failed, 10) - failing.length;
      if (more > 0) list.append(el("li", { class: "muted", text: "… " + more + " more" }));
      details.append(el("dt", { text: "Failing cases" }), el("dd", {}, list));
    }
    const summary = el("summary", { title: d.reason || "" },
      el("span", { class: "verdict " + verdict.replace(" ", "-"), text: verdict }), diff);
    return el("td", { class: "gate" }, el("details", {}, summary, details));
  }

  /** The dataset filter lists the datasets of this model's versions ("all" first). */
  function renderDatasets(data) {
    const select = $("dataset-select");
    const chosen = data.dataset || "";
    select.replaceChildren(el("option", { value: "", text: "all datasets" }),
      ...data.datasets.map((d) => el("option", { value: d, text: d })));
    select.value = data.datasets.includes(chosen) ? chosen : "";
  }

  function renderVersions() {
    const data = state.versions;
    renderDatasets(data);
    const columns = [
      ...FIXED_COLUMNS,
      ...data.columns.map((m) => ({ key: m, label: breakable(m), num: true, metric: true })),
      { key: "gate", label: "Gate decision" },
      { key: "created_at", label: "Registered" },
    ];
    const head = $("versions-head");
    head.replaceChildren();
    for (const col of columns) {
      const active = state.sort.key === col.key;
      const aria = active ? (state.sort.dir > 0 ? "ascending" : "descending") : "none";
      const button = el("button", { type: "button", "data-sort": col.key,
        onclick: () => {
          state.sort = { key: col.key, dir: active ? -state.sort.dir : (col.num ? -1 : 1) };
          renderVersions();
          head.querySelector('[data-sort="' + col.key + '"]').focus();
        } },
        col.label, el("span", { class: "dir", "aria-hidden": "true", text: active ? (state.sort.dir > 0 ? " ▲" : " ▼") : "" }));
      head.append(el("th", { scope: "col", class: col.num ? "num" : null, "aria-sort": aria }, button));
    }
    head.append(el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Actions" })));

    const { key, dir } = state.sort;
    const rows = [...data.versions].sort((a, b) => {
      const x = sortValue(a, key), y = sortValue(b, key);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   // missing values last, whatever the direction
      if (y === null) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });

    const tbody = $("versions-body");
    tbody.replaceChildren();
    if (rows.length === 0) {
      tbody.append(el("tr", {}, el("td", { colspan: columns.length + 1, class: "muted",
        text: "No registered versions yet: run the training pipeline first." })));
    }
    const best = data.best ? data.best.version : null;
    for (const row of rows) {
      const serving = row.version === data.serving_version;
      const tr = el("tr", { "data-version": row.version,
        class: [serving ? "serving" : "", row.version === best ? "best" : ""].join(" ").trim() || null });
      const first = el("td", { class: "num" }, row.version);
      if (serving) first.append(el("span", { class: "badge serving", text: "serving" }));
      if (row.version === best) first.append(el("span", { class: "badge best", text: "best" }));
      for (const alias of row.aliases) first.append(el("span", { class: "badge", text: "@" + alias }));
      const where = [row.dataset_source, row.dataset_uri ? "snapshot: " + row.dataset_uri : null]
        .filter(Boolean).join("\n");
      const dataset = el("td", { class: "dataset" },
        el("span", { class: "dataset-name", title: where || null, text: row.dataset || "—" }));
      if (row.dataset_uri) dataset.append(el("span", { class: "sr-only", text: " (snapshot " + row.dataset_uri + ")" }));
      tr.append(first, el("td", { text: row.family || "—" }), dataset);
      for (const m of data.columns) tr.append(el("td", { class: "num", text: fmtNumber(row.metrics[m]) }));
      tr.append(gateCell(row.decision));
      tr.append(el("td", { class: "date", title: fmtDate(row.created_at), text: fmtDay(row.created_at) }));
      tr.append(data.deployable === false
        ? el("td", { class: "muted", title: "The model server serves " + data.served_model, text: "not served" })
        : el("td", {}, el("button", { type: "button", class: "small secondary deploy-version",
          "aria-label": "Deploy version " + row.version, text: "Deploy",
          disabled: state.deploying, onclick: () => deploy(row.version) })));
      tbody.append(tr);
    }

    const summary = $("best-summary");
    const bestButton = $("deploy-best");
    const direction = data.lower_is_better ? "lower is better" : "higher is better";
    if (data.best) {
      summary.replaceChildren("Best by ", el("strong", { text: data.metric }), " (" + direction + "): ",
        el("strong", { id: "best-version", text: "version " + data.best.version }),
        " with " + fmtNumber(data.best.value) +
        (data.best.version === data.serving_version ? " — it is already serving." : "."));
      if (!data.dataset && data.datasets.length > 1) {
        summary.append(el("span", { class: "hint", id: "mixed-datasets",
          text: " These versions come from " + data.datasets.length + " datasets, so their metrics were " +
            "measured on different rows: pick a dataset to compare like with like." }));
      }
      bestButton.textContent = "Deploy the best (version " + data.best.version + ")";
      bestButton.disabled = state.deploying || data.deployable === false;
    } else {
      summary.textContent = data.why_no_best || "No version to choose from.";
      bestButton.textContent = "Deploy the best";
      bestButton.disabled = true;
    }
  }

  // --- token and deploy ----------------------------------------------------------------------------
  function getToken() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function renderTokenState() {
    const has = Boolean(getToken());
    $("token-state").textContent = has ? "A token is set for this tab." : "No token set.";
    $("token-forget").disabled = !has;
  }

  function saveToken(event) {
    event.preventDefault();
    const value = $("token-input").value.trim();
    $("token-input").value = "";
    if (!value) {
      setDeployStatus("bad", "The token is empty: paste the admin token first.");
      $("token-input").focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, value);
    renderTokenState();
  }

  function forgetToken() {
    sessionStorage.removeItem(TOKEN_KEY);
    renderTokenState();
  }

  function setDeployStatus(kind, message, busy) {
    const box = $("deploy-status");
    box.hidden = false;
    box.className = "status " + (kind || "");
    $("deploy-progress").hidden = !busy;
    $("deploy-message").textContent = message;
  }

  function setDeploying(on) {
    state.deploying = on;
    document.querySelectorAll(".deploy-version").forEach((b) => { b.disabled = on; });
    $("deploy-best").disabled = on || !(state.versions && state.versions.best);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function stillServing() {
    const m = await loadModel();
    return m ? "Version " + m.version + " is still serving." : "No model is serving.";
  }

  function getRequester() { return (sessionStorage.getItem(REQUESTER_KEY) || "").trim(); }

  function saveRequester() {
    sessionStorage.setItem(REQUESTER_KEY, $("requester-input").value.trim());
  }

  /** The run's page in Airflow's UI, shown only when it is an http(s) address. */
  function showRunLink(url) {
    const link = $("deploy-link");
    const ok = typeof url === "string" && /^https?:\/\//i.test(url);
    link.hidden = !ok;
    if (ok) link.href = url;
  }

  function runState(run) {
    const tasks = (run.failed_tasks || []).join(", ");
    return "release run " + run.dag_run_id + " is " + run.state + (tasks ? " (failed tasks: " + tasks + ")" : "");
  }

  async function deploy(version) {
    const token = getToken();
    saveRequester();
    const requester = getRequester();
    document.getElementById("deploy").scrollIntoView({ block: "nearest" });
    showRunLink(null);
    if (!token) {
      setDeployStatus("bad", "Enter the admin token first, then deploy version " + version + " again.");
      $("token-input").focus();
      return;
    }
    if (!requester) {
      setDeployStatus("bad", "Enter your name first (it is recorded with the release), then deploy version " +
        version + " again.");
      $("requester-input").focus();
      return;
    }
    const before = state.model ? state.model.version : null;
    const auth = { Authorization: "Bearer " + token };
    setDeploying(true);
    setDeployStatus("", "Asking Airflow to release version " + version + "…", true);
    try {
      let run;
      try {
        run = await api("/deploy", {
          method: "POST",
          headers: { "Content-Type": "application/json", ...auth },
          body: JSON.stringify({ version: String(version), requested_by: requester }),
        });
      } catch (err) {
        if (err.status === 401) {
          forgetToken();
          setDeployStatus("bad", "The server rejected the admin token (" + err.message +
            "). Enter the right token and try again. " + (await stillServing()));
          $("token-input").focus();
          return;
        }
        setDeployStatus("bad", "Deployment of version " + version + " was refused: " + err.message +
          " " + (await stillServing()));
        return;
      }
      // The release runs in Airflow (gate, promote, deploy to every replica, inference check): poll the
      // run until it is final, showing its state and its page in Airflow.
      showRunLink(run.airflow_url);
      const deadline = Date.now() + 30 * 60 * 1000;
      while (run.state !== "success" && run.state !== "failed") {
        if (Date.now() > deadline) {
          setDeployStatus("bad", "The " + runState(run) + " after 30 minutes; follow it in Airflow. " +
            (await stillServing()));
          return;
        }
        setDeployStatus("", "Releasing version " + version + ": " + runState(run) +
          ". The pipeline checks, promotes and deploys it, then checks it answers…", true);
        await sleep(2000);
        try {
          run = await api("/deploy/status?id=" + encodeURIComponent(run.dag_run_id), { headers: auth });
        } catch (err) {
          if (err.status !== 422 || !err.body || !err.body.dag_run_id) throw err;
          run = err.body;  // the run failed: its state and failed tasks
        }
      }
      if (run.state === "failed") {
        setDeployStatus("bad", "The release of version " + version + " failed: " + runState(run) +
          ". Its log in Airflow says why. " + (await stillServing()));
        return;
      }
      const m = await loadModel();
      const now = m ? m.version : null;
      setDeployStatus(now === String(version) ? "ok" : "bad", "Done: the " + runState(run) + ". " +
        (now === String(version)
          ? "Version " + now + " is now serving" + (before && before !== now ? " (was version " + before + ")" : "") + "."
          : (await stillServing())));
    } catch (err) {
      setDeployStatus("bad", "Could not follow the release: " + err.message);
    } finally {
      setDeploying(false);
      loadVersions(false);
    }
  }

  // --- feedback chart ------------------------------------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  async function loadFeedback() {
    showError("feedback-error", null);
    let data;
    try {
      data = await api("/ui/api/feedback/daily?days=" + encodeURIComponent($("feedback-days").value));
    } catch (err) {
      showError("feedback-error", "Could not read the feedback: " + err.message);
      return;
    }
    const w = data.window, all = data.all_time;
    const allTime = all.total ? " All time: " + pct(all.accuracy) + " of " + all.total + " flags." : "";
    if (w.total === 0) {
      $("feedback-accuracy").replaceChildren("Production accuracy from feedback: ",
        el("strong", { id: "accuracy-value", text: "no flags" }), " in the last " + w.days + " days." + allTime);
    } else {
      $("feedback-accuracy").replaceChildren("Production accuracy from feedback: ",
        el("strong", { id: "accuracy-value", text: pct(w.accuracy) }),
        " over the last " + w.days + " days (" + w.correct + " of " + w.total + " flags correct)." + allTime);
    }
    drawChart(data.days);
  }

  let lastDays = null;
  function drawChart(days) {
    lastDays = days;
    // Drawn at the box's real width, so axis text keeps its size on a phone instead of shrinking.
    const width = Math.max(260, Math.min(1000, $("feedback-chart").clientWidth || 640));
    const height = 200, left = 32, bottom = 24, top = 10, right = 8;
    const maxCount = Math.max(1, ...days.map((d) => d.correct + d.wrong));
    const plotH = height - top - bottom;
    const slot = (width - left - right) / days.length;
    const barW = Math.max(2, slot * 0.7);
    const root = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "Correct and wrong flags per day" });
    root.append(svg("title", {}, "Correct and wrong flags per day"));
    root.append(svg("line", { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, stroke: "#9aa3ad" }));
    root.append(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end", class: "axis" }, String(maxCount)));
    root.append(svg("text", { x: left - 4, y: top + plotH, "text-anchor": "end", class: "axis" }, "0"));
    const labelEvery = Math.ceil(days.length / Math.max(2, Math.floor(width / 70)));
    days.forEach((d, i) => {
      const x = left + i * slot + (slot - barW) / 2;
      const hc = (d.correct / maxCount) * plotH;
      const hw = (d.wrong / maxCount) * plotH;
      const g = svg("g", { "data-date": d.date });
      g.append(svg("title", {}, d.date + ": " + d.correct + " correct, " + d.wrong + " wrong"));
      if (d.correct) g.append(svg("rect", { x: x, y: top + plotH - hc, width: barW, height: hc, fill: "#2e7d32" }));
      if (d.wrong) g.append(svg("rect", { x: x, y: top + plotH - hc - hw, width: barW, height: hw, fill: "#c62828" }));
      root.append(g);
      if ((days.length - 1 - i) % labelEvery === 0) {  // anchored on today, so labels never collide
        root.append(svg("text", { x: x + barW / 2, y: height - 6, "text-anchor": "middle", class: "axis" },
          d.date.slice(5)));
      }
    });
    $("feedback-chart").replaceChildren(root);
  }

  // --- review queue (reviewer token) ---------------------------------------------------------------
  function reviewerToken() { return sessionStorage.getItem(REVIEWER_TOKEN_KEY) || ""; }
  function reviewerName() { return $("reviewer-name").value.trim(); }

  function reviewerApi(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = Object.assign({ "Authorization": "Bearer " + reviewerToken() }, opts.headers || {});
    return api(path, opts);
  }

  function renderReviewerState() {
    const has = Boolean(reviewerToken());
    $("reviewer-state").textContent = has ? "Signed in as a reviewer." : "Not signed in.";
    $("reviewer-sign-out").disabled = !has;
  }

  function reviewFilter() {
    const filter = {};
    for (const name of ["label", "predicted_label", "model_version", "client", "text_contains"]) {
      const value = $("review-filter").elements[name].value.trim();
      if (value) filter[name] = value;
    }
    for (const name of ["since", "until"]) {
      const value = $("review-filter").elements[name].value;
      if (value) filter[name] = new Date(value).toISOString();
    }
    return filter;
  }

  async function loadReview(event) {
    if (event) event.preventDefault();
    $("review-error").hidden = true;
    if (!reviewerToken()) {
      $("review-body").replaceChildren();
      $("review-summary").textContent = "Sign in with the reviewer token to see pending feedback.";
      return;
    }
    const query = new URLSearchParams(reviewFilter());
    try {
      const data = await reviewerApi("/feedback/review?" + query.toString());
      $("review-summary").textContent = data.total + " pending " + (data.total === 1 ? "row" : "rows") +
        (data.total > data.rows.length ? " (showing the oldest " + data.rows.length + ")" : "") + ".";
      $("review-body").replaceChildren(...data.rows.map(reviewRow));
    } catch (err) {
      showError("review-error", err.message);
    }
  }

  function needName() {
    if (reviewerName()) return false;
    showError("review-error", "Type your name first: it is recorded with each decision.");
    $("reviewer-name").focus();
    return true;
  }

  function reviewRow(row) {
    const claimed = row.correct ? row.predicted_label : (row.true_label || "(no label given)");
    const served = (state.model && state.model.label_names) || [];
    const labels = Array.from(new Set([row.true_label, row.predicted_label, ...served].filter(Boolean)));
    const select = el("select", { "aria-label": "Correct label of row " + row.id },
      ...labels.map((l) => el("option", { value: l, text: l })));
    async function decide(decision) {
      if (needName()) return;
      const body = { decision: decision, reviewer: reviewerName() };
      if (decision === "correct") body.label = select.value;
      try {
        await reviewerApi("/feedback/" + row.id + "/review", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
        loadReview();
      } catch (err) {
        showError("review-error", err.message);
      }
    }
    return el("tr", { "data-id": String(row.id) },
      el("td", { text: String(row.id) }),
      el("td", { text: fmtDate(row.created_at) }),
      el("td", { class: "review-text", text: row.text }),
      el("td", { text: row.predicted_label }),
      el("td", { text: claimed }),
      el("td", { text: row.client || "" }),
      el("td", { class: "review-actions" },
        el("button", { type: "button", class: "review-accept", onclick: () => decide("accept") }, "Accept"),
        select,
        el("button", { type: "button", class: "secondary review-correct", onclick: () => decide("correct") }, "Correct"),
        el("button", { type: "button", class: "secondary review-reject", onclick: () => decide("reject") }, "Reject")));
  }

  async function decideAll(decision) {
    $("review-error").hidden = true;
    if (needName()) return;
    const filter = reviewFilter();
    if (!Object.keys(filter).length) {
      showError("review-error", "Set at least one filter: a bulk decision never covers everything by accident.");
      return;
    }
    try {
      const data = await reviewerApi("/feedback/review", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ decision: decision, reviewer: reviewerName(), filter: filter }),
      });
      await loadReview();
      $("review-summary").textContent = decision + ": " + data.changed + " rows. " + $("review-summary").textContent;
    } catch (err) {
      showError("review-error", err.message);
    }
  }

  function signInReviewer(event) {
    event.preventDefault();
    const value = $("reviewer-token-input").value.trim();
    $("reviewer-token-input").value = "";
    if (!value) {
      showError("review-error", "The token is empty: paste the reviewer token first.");
      return;
    }
    sessionStorage.setItem(REVIEWER_TOKEN_KEY, value);
    renderReviewerState();
    loadReview();
  }

  function signOutReviewer() {
    sessionStorage.removeItem(REVIEWER_TOKEN_KEY);
    renderReviewerState();
    loadReview();
  }

  // --- wiring --------------------------------------------------------------------------------------
  $("predict-form").addEventListener("submit", predict);
  $("predict-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("predict-form").requestSubmit();
  });
  $("metric-select").addEventListener("change", () => loadVersions(true));
  $("model-select").addEventListener("change", () => { $("dataset-select").value = ""; loadVersions(true); });
  $("dataset-select").addEventListener("change", () => loadVersions(true));
  $("versions-refresh").addEventListener("click", () => loadModels().then(() => loadVersions(false)));
  $("model-refresh").addEventListener("click", () => loadModel());
  $("deploy-best").addEventListener("click", () => {
    if (state.versions && state.versions.best) deploy(state.versions.best.version);
  });
  $("token-form").addEventListener("submit", saveToken);
  $("token-forget").addEventListener("click", forgetToken);
  $("requester-input").addEventListener("change", saveRequester);
  $("requester-input").value = getRequester();
  $("feedback-days").addEventListener("change", loadFeedback);
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (lastDays) drawChart(lastDays); }, 150);
  });

  $("reviewer-form").addEventListener("submit", signInReviewer);
  $("reviewer-sign-out").addEventListener("click", signOutReviewer);
  $("reviewer-name").value = sessionStorage.getItem(REVIEWER_NAME_KEY) || "";
  $("reviewer-name").addEventListener("change", () => sessionStorage.setItem(REVIEWER_NAME_KEY, reviewerName()));
  $("review-filter").addEventListener("submit", loadReview);
  $("review-refresh").addEventListener("click", () => loadReview());
  $("review-accept-all").addEventListener("click", () => decideAll("accept"));
  $("review-reject-all").addEventListener("click", () => decideAll("reject"));

  renderTokenState();
  renderReviewerState();
  loadReview();
  Promise.all([loadModel(), loadModels()]).then(() => loadVersions(false));
  loadFeedback();
})();

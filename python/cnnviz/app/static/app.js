// cnnviz dashboard: plain JavaScript, no build step. Every request carries the access token.
"use strict";

(function () {
  const token = document.querySelector('meta[name="cnnviz-token"]').content;
  const $ = (id) => document.getElementById(id);
  const state = { info: null, job: null, pollTimer: null, filters: {}, predictions: {} };

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers["X-Cnnviz-Token"] = token;
    const response = await fetch(path, opts);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      throw new Error((body && body.error) || ("HTTP " + response.status));
    }
    return body;
  }

  function setStatus(text, isError) {
    const el = $("status-text");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  function option(value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    return o;
  }

  function fillImages(select, images, keep) {
    const previous = keep ? select.value : null;
    select.replaceChildren();
    const groups = { given: "Your images", upload: "Uploaded", sample: "Sample photos" };
    for (const source of ["given", "upload", "sample"]) {
      const items = images.filter((i) => i.source === source);
      if (!items.length) continue;
      const g = document.createElement("optgroup");
      g.label = groups[source];
      for (const i of items) g.appendChild(option(i.id, i.name));
      select.appendChild(g);
    }
    if (previous && images.some((i) => i.id === previous)) select.value = previous;
  }

  function fillLayers(select) {
    select.replaceChildren();
    for (const l of state.info.layers) {
      if (!l.spatial) continue;
      select.appendChild(option(l.name, l.name + "  " + l.type + " [" + l.shape.slice(1).join("x") + "]"));
    }
    const spatial = state.info.layers.filter((l) => l.spatial);
    if (spatial.length) select.value = spatial[Math.max(0, spatial.length - 2)].name;
  }

  function fillMethods(select) {
    select.replaceChildren();
    for (const m of state.info.methods) select.appendChild(option(m.id, m.title + (m.live ? " (live)" : "")));
  }

  async function refreshImages(selectId) {
    const r = await api("api/images");
    fillImages($("image"), r.images, true);
    fillImages($("b-image"), r.images, true);
    if (selectId) $("image").value = selectId;
  }

  async function loadPredictions() {
    const image = $("image").value;
    $("thumb").src = "api/image/" + encodeURIComponent(image) + "?token=" + encodeURIComponent(token);
    const r = await api("api/predict?image=" + encodeURIComponent(image));
    if (image !== $("image").value) return;
    const list = $("predictions");
    list.replaceChildren();
    const target = $("target");
    target.replaceChildren(option("", "the predicted class"));
    for (const p of r.predictions) {
      const li = document.createElement("li");
      li.textContent = p.label + " ";
      const span = document.createElement("span");
      span.className = "p";
      span.textContent = (100 * p.probability).toFixed(1) + "%";
      li.appendChild(span);
      list.appendChild(li);
      target.appendChild(option(String(p.index), p.label));
    }
  }

  async function loadFilters() {
    const image = $("image").value, layer = $("layer").value;
    const r = await api("api/filters?image=" + encodeURIComponent(image) + "&layer=" + encodeURIComponent(layer));
    if (image !== $("image").value || layer !== $("layer").value) return;
    const select = $("filter");
    const previous = select.value;
    select.replaceChildren();
    for (const f of r.filters) select.appendChild(option(String(f.channel), "channel " + f.channel + "  (" + f.score.toFixed(3) + ")"));
    if (r.filters.some((f) => String(f.channel) === previous)) select.value = previous;
  }

  function request() {
    const body = {
      image: $("image").value, layer: $("layer").value, method: $("method").value,
      channel: $("filter").value === "" ? null : Number($("filter").value),
      colormap: $("colormap").value, target: $("target").value === "" ? null : Number($("target").value),
      iterations: Number($("iterations").value) || 200, eps: Number($("eps").value),
    };
    if ($("compare").checked) {
      body.compare = { image: $("b-image").value, layer: $("b-layer").value, method: $("b-method").value };
      if (body.compare.layer !== body.layer) body.compare.channel = null;
    }
    return body;
  }

  function paneTitle(spec) {
    const m = state.info.methods.find((x) => x.id === spec.method);
    const img = $("image").querySelector('option[value="' + CSS.escape(spec.image) + '"]');
    return (m ? m.title : spec.method) + " · " + (img ? img.textContent : spec.image) + " · " + spec.layer;
  }

  function renderPane(el, result) {
    el.replaceChildren();
    const h = document.createElement("h3");
    h.textContent = paneTitle(result);
    el.appendChild(h);
    const panels = document.createElement("div");
    panels.className = "panels";
    for (const p of result.panels) {
      const fig = document.createElement("figure");
      const img = document.createElement("img");
      img.src = p.src;
      img.alt = p.title;
      const cap = document.createElement("figcaption");
      cap.textContent = p.title + (p.caption ? " — " + p.caption : "");
      fig.append(img, cap);
      panels.appendChild(fig);
    }
    el.appendChild(panels);
    for (const n of result.notes || []) {
      const p = document.createElement("p");
      p.className = "notes";
      p.textContent = n;
      el.appendChild(p);
    }
  }

  function renderPreview(preview) {
    const el = $("pane-" + preview.pane);
    let fig = el.querySelector("figure.live");
    if (!fig) {
      el.replaceChildren();
      fig = document.createElement("figure");
      fig.className = "live";
      const img = document.createElement("img");
      img.id = "live-" + preview.pane;
      img.alt = "the image being optimized";
      fig.append(img, document.createElement("figcaption"));
      el.appendChild(fig);
    }
    const img = fig.querySelector("img");
    if (img.getAttribute("src") !== preview.src) img.src = preview.src;
    img.dataset.step = String(preview.step);
    fig.querySelector("figcaption").textContent = "step " + preview.step + " of " + preview.total;
  }

  async function poll(jobId) {
    if (state.job !== jobId) return;
    let s;
    try {
      s = await api("api/job/" + encodeURIComponent(jobId));
    } catch (e) {
      setStatus(e.message, true);
      return;
    }
    if (state.job !== jobId) return;
    const bar = $("bar");
    if (s.total > 0) { bar.max = s.total; bar.value = s.step; } else { bar.removeAttribute("value"); }
    if (s.preview) renderPreview(s.preview);
    document.body.dataset.jobState = s.state;
    if (s.state === "done") {
      bar.max = 1; bar.value = 1;
      renderPane($("pane-a"), s.result.a);
      if (s.result.b) renderPane($("pane-b"), s.result.b);
      setStatus("done in " + s.seconds + " s");
      return;
    }
    if (s.state === "stopped") { setStatus("stopped at step " + s.step); bar.value = 0; return; }
    if (s.state === "error") { setStatus(s.error, true); bar.max = 1; bar.value = 0; return; }
    setStatus(s.state + (s.total ? " — step " + s.step + " of " + s.total : "") +
              (s.loss !== null && s.loss !== undefined ? ", loss " + Number(s.loss).toPrecision(4) : ""));
    state.pollTimer = setTimeout(() => poll(jobId), 200);
  }

  async function run() {
    clearTimeout(state.pollTimer);
    $("pane-b").hidden = !$("compare").checked;
    document.body.dataset.jobState = "starting";
    try {
      const r = await api("api/run", { method: "POST", headers: { "Content-Type": "application/json" },
                                        body: JSON.stringify(request()) });
      state.job = r.job;
      setStatus("running");
      poll(r.job);
    } catch (e) {
      document.body.dataset.jobState = "error";
      setStatus(e.message, true);
    }
  }

  async function stop() {
    try {
      await api("api/stop", { method: "POST" });
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  async function imageChanged() {
    $("filter").replaceChildren();
    run();
    try {
      await Promise.all([loadPredictions(), loadFilters()]);
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  async function layerChanged() {
    $("filter").replaceChildren();
    run();
    try { await loadFilters(); } catch (e) { setStatus(e.message, true); }
  }

  async function upload() {
    const file = $("upload").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const r = await api("api/upload", { method: "POST", body: form });
      await refreshImages(r.id);
      document.body.dataset.uploaded = r.id;
      await imageChanged();
    } catch (e) {
      setStatus(e.message, true);
    } finally {
      $("upload").value = "";
    }
  }

  async function init() {
    state.info = await api("api/info");
    $("model-name").textContent = state.info.model + " · " + state.info.size + "x" + state.info.size +
      " input · " + state.info.classes + " classes";
    fillImages($("image"), state.info.images, false);
    fillImages($("b-image"), state.info.images, false);
    fillLayers($("layer"));
    fillLayers($("b-layer"));
    fillMethods($("method"));
    fillMethods($("b-method"));
    for (const c of state.info.colormaps) $("colormap").appendChild(option(c, c));
    $("image").addEventListener("change", imageChanged);
    $("layer").addEventListener("change", layerChanged);
    for (const id of ["method", "filter", "target", "colormap", "b-image", "b-layer", "b-method", "compare"]) {
      $(id).addEventListener("change", run);
    }
    $("compare").addEventListener("change", () => { $("compare-controls").hidden = !$("compare").checked; });
    $("run").addEventListener("click", run);
    $("stop").addEventListener("click", stop);
    $("upload").addEventListener("change", upload);
    if (!$("image").value) { setStatus("no images yet: upload a photo"); return; }
    await imageChanged();
    document.body.dataset.ready = "1";
  }

  init().catch((e) => setStatus(e.message, true));
})();

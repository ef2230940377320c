/* dashboard.js -- polls the worker's status and metrics and the module's
 * metrics, and draws them with the DOM and inline SVG */

/*
 * No framework and no build step: nginx serves this file as it is.  The
 * page lives at <base>dashboard/ and reads <base>worker/status,
 * <base>worker/metrics.json and <base>metrics.json (the contract of
 * docs/WORKER.md and README's Dashboard), every ?interval= seconds (2 by
 * default).  Every number a test compares is an element of its own with a
 * data-metric attribute (and data-target, data-class, ... naming the
 * series), holding the number alone, formatted as fmt* below; the unit is
 * outside it.  Text that comes from the endpoints (vendor errors above
 * all) only ever reaches the page as textContent.
 */

(function () {
    "use strict";

    var SVGNS = "http://www.w3.org/2000/svg";
    var TOKEN_KEY = "vantage.dashboard.admin_token";
    var HISTORY_MS = 30 * 60 * 1000;      /* what /status keeps */
    var BUCKET_MS = 10 * 1000;
    var KEEP_REPLAYED_MS = 10 * 60 * 1000;
    var DASH = "\u2014";

    /* Okabe-Ito: told apart with the common colour-vision deficiencies,
     * and dark enough on white (>= 3:1 for lines) */
    var COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#8f6b00",
                   "#56b4e9", "#000000", "#7a4fa0"];

    var STATUS_TEXT = {
        healthy: "healthy",
        degraded: "degraded",
        breaker_open: "breaker open"
    };
    var STATUS_ICON = { healthy: "\u2714", degraded: "!",
                        breaker_open: "\u2716" };
    var CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"];
    var DECISIONS = ["admitted", "limited", "dry_run", "fallback"];
    var JOB_STATES = ["accepted", "succeeded", "retrying", "dead",
                      "replayed"];

    var params = new URLSearchParams(window.location.search);
    var intervalMs = pollInterval(params.get("interval"));
    var base = new URL("../", window.location.href);

    var sources = {
        status: { name: "worker status", url: new URL("worker/status", base) },
        worker: { name: "worker metrics",
                  url: new URL("worker/metrics.json", base) },
        gateway: { name: "gateway metrics",
                   url: new URL("metrics.json", base) }
    };

    var state = {
        polledAt: null,        /* Date of the last poll that completed */
        replays: {},           /* job id -> { ok, text, status, at, row } */
        drawn: {},             /* section -> signature of what is drawn */
        drawError: null,
        inflight: null,        /* the running poll's promise */
        again: false,
        timer: null,
        token: ""              /* when sessionStorage is refused */
    };

    Object.keys(sources).forEach(function (k) {
        sources[k].data = null;      /* the last good answer */
        sources[k].error = null;     /* why the last read failed */
        sources[k].okAt = null;      /* Date of the last good answer */
    });


    /* ----------------------------------------------------------------
     * formatting: what a test compares must be formatted exactly so */

    function pollInterval(v) {
        var s = parseFloat(v);

        if (!isFinite(s)) {
            return 2000;
        }
        return Math.round(Math.min(Math.max(s, 0.5), 3600) * 1000);
    }

    function isNum(v) {
        return typeof v === "number" && isFinite(v);
    }

    /* counts: the integer itself */
    function fmtCount(v) {
        if (!isNum(v)) {
            return DASH;
        }
        return String(Math.round(v));
    }

    /* seconds to milliseconds, one decimal */
    function fmtMs(v) {
        return isNum(v) ? (v * 1000).toFixed(1) : DASH;
    }

    /* a ratio (0..1) as a percentage, one decimal */
    function fmtPercent(v) {
        return isNum(v) ? (v * 100).toFixed(1) : DASH;
    }

    /* seconds, one decimal */
    function fmtSeconds(v) {
        return isNum(v) ? v.toFixed(1) : DASH;
    }

    function pad2(n) {
        return (n < 10 ? "0" : "") + n;
    }

    /* local time of day, HH:MM:SS, whatever the browser's locale */
    function fmtClock(ms) {
        var d;

        if (!isNum(ms)) {
            return DASH;
        }
        d = new Date(ms);
        return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":"
               + pad2(d.getSeconds());
    }

    function str(v) {
        return v === null || v === undefined ? "" : String(v);
    }


    /* ----------------------------------------------------------------
     * DOM helpers */

    /* el("td", {class: "x", "data-metric": "m"}, child, "text", ...) */
    function el(tag, attrs) {
        var e = document.createElement(tag);
        var i, k, c;

        attrs = attrs || {};
        for (k in attrs) {
            if (Object.prototype.hasOwnProperty.call(attrs, k)
                && attrs[k] !== null && attrs[k] !== undefined)
            {
                e.setAttribute(k, String(attrs[k]));
            }
        }
        for (i = 2; i < arguments.length; i++) {
            c = arguments[i];
            if (c === null || c === undefined) {
                continue;
            }
            e.appendChild(typeof c === "string" ? document.createTextNode(c)
                                                : c);
        }
        return e;
    }

    function svg(tag, attrs) {
        var e = document.createElementNS(SVGNS, tag);
        var k;

        for (k in attrs || {}) {
            if (Object.prototype.hasOwnProperty.call(attrs, k)) {
                e.setAttribute(k, String(attrs[k]));
            }
        }
        return e;
    }

    /* an element holding one number a test may compare */
    function metric(name, value, fmt, labels, tag) {
        var attrs = { "data-metric": name, "class": "num" };
        var k;

        for (k in labels || {}) {
            if (Object.prototype.hasOwnProperty.call(labels, k)) {
                attrs["data-" + k] = labels[k];
            }
        }
        if (!isNum(value)) {
            attrs["data-null"] = "true";
        }
        return el(tag || "span", attrs, fmt(value));
    }

    /* replaces a section's content unless what it shows is unchanged, so
     * that focus and selection survive a poll that changed nothing */
    function draw(id, signature, build) {
        var node = document.getElementById(id);

        if (state.drawn[id] === signature) {
            return;
        }
        state.drawn[id] = signature;
        node.replaceChildren.apply(node, build().filter(function (n) {
            return n !== null && n !== undefined;
        }));
    }

    function table(caption, heads, rows, cls) {
        var thead = el("thead", null,
                       el.apply(null, ["tr", null].concat(heads.map(
                           function (h) {
                               return el("th", { scope: "col" }, h);
                           }))));
        var tbody = el("tbody");

        rows.forEach(function (r) {
            tbody.appendChild(r);
        });
        return el("table", { "class": cls || null },
                  caption ? el("caption", { "class": "sr-only" }, caption)
                          : null,
                  thead, tbody);
    }

    function empty(text) {
        return el("p", { "class": "empty" }, text);
    }


    /* ----------------------------------------------------------------
     * reading the metrics JSON (the mirror of the Prometheus text) */

    function family(src, name) {
        var m = src && src.data && src.data.metrics;
        var i;

        if (!Array.isArray(m)) {
            return null;
        }
        for (i = 0; i < m.length; i++) {
            if (m[i] && m[i].name === name) {
                return m[i];
            }
        }
        return null;
    }

    /* {label value: sum of the samples' values}, over samples keep()
     * accepts */
    function sumBy(fam, label, keep) {
        var out = {};

        if (!fam || !Array.isArray(fam.samples)) {
            return out;
        }
        fam.samples.forEach(function (s) {
            var l = s.labels || {};
            var k = str(l[label]);

            if (!isNum(s.value) || (keep && !keep(l))) {
                return;
            }
            out[k] = (out[k] || 0) + s.value;
        });
        return out;
    }


    /* ----------------------------------------------------------------
     * polling */

    function fetchSource(key) {
        var src = sources[key];
        var ctl = new AbortController();
        var timer = setTimeout(function () {
            ctl.abort();
        }, Math.max(intervalMs, 5000));

        return fetch(src.url, { cache: "no-store", credentials: "same-origin",
                                headers: { Accept: "application/json" },
                                signal: ctl.signal })
            .then(function (r) {
                if (!r.ok) {
                    throw new Error("HTTP " + r.status
                                    + (r.statusText ? " " + r.statusText
                                                    : ""));
                }
                return r.json().catch(function () {
                    throw new Error("the answer is not JSON");
                });
            })
            .then(function (data) {
                if (data === null || typeof data !== "object"
                    || (key !== "status" && !Array.isArray(data.metrics)))
                {
                    throw new Error("the answer is not what the dashboard "
                                    + "reads");
                }
                src.data = data;
                src.error = null;
                src.okAt = new Date();
            })
            .catch(function (e) {
                src.error = e.name === "AbortError" ? "no answer in time"
                                                     : e.message;
            })
            .finally(function () {
                clearTimeout(timer);
            });
    }

    /* one poll at a time: a call while one runs (a replay's refresh)
     * makes another follow it at once */
    function poll() {
        if (state.inflight) {
            state.again = true;
            return state.inflight;
        }
        clearTimeout(state.timer);
        state.timer = null;

        state.inflight = Promise.all(Object.keys(sources).map(fetchSource))
            .then(function () {
                state.polledAt = new Date();
                state.drawError = null;
                try {
                    render();
                } catch (e) {
                    /* a bug in drawing: say so rather than stop polling */
                    state.drawError = e.message;
                    renderBanners();
                }
            })
            .finally(function () {
                state.inflight = null;
                if (state.again) {
                    state.again = false;
                    poll();
                } else if (!document.hidden) {
                    state.timer = setTimeout(poll, intervalMs);
                }
            });
        return state.inflight;
    }


    /* ----------------------------------------------------------------
     * drawing */

    function render() {
        renderHeader();
        renderBanners();
        renderCards();
        renderCharts();
        renderQueues();
        renderGateway();
        renderJobs();
        renderFailures();
        renderDead();
        document.body.setAttribute("data-polled", String(+state.polledAt));
    }

    function renderHeader() {
        var t = document.getElementById("last-updated");
        var s = sources.status.data;
        var r = document.getElementById("redis-state");

        t.textContent = fmtClock(+state.polledAt);
        t.setAttribute("datetime", state.polledAt.toISOString());
        /* not what a worker that no longer answers said last */
        r.textContent = sources.status.error ? "unknown"
                        : s && s.redis ? String(s.redis) : DASH;
        r.className = !sources.status.error && s && s.redis === "connected"
                      ? "ok" : "bad";
    }

    function renderBanners() {
        var lines = [];

        Object.keys(sources).forEach(function (k) {
            var src = sources[k];

            if (src.error) {
                lines.push([k, "Cannot read the " + src.name + " ("
                            + src.url.pathname + "): " + src.error
                            + (src.okAt ? "; showing what it said at "
                                          + fmtClock(+src.okAt)
                                        : "") + "."]);
            }
        });
        if (state.drawError) {
            lines.push(["dashboard", "Drawing the page failed: "
                        + state.drawError + "."]);
        }

        draw("banners", JSON.stringify(lines), function () {
            return lines.map(function (l) {
                return el("p", { "class": "banner", "data-endpoint": l[0] },
                          l[1]);
            });
        });

        Object.keys(sources).forEach(function (k) {
            document.querySelectorAll("[data-source=\"" + k + "\"]")
                .forEach(function (n) {
                    n.classList.toggle("stale", !!sources[k].error);
                });
        });
    }

    function unavailable(key) {
        return empty(sources[key].error
                     ? "Unavailable: " + sources[key].error + "."
                     : "Waiting for " + sources[key].url.pathname + "…");
    }

    function statusList(name) {
        var s = sources.status.data;

        return s && Array.isArray(s[name]) ? s[name] : [];
    }

    function connectors() {
        return statusList("connectors").slice().sort(function (a, b) {
            return str(a.target) < str(b.target) ? -1
                   : str(a.target) > str(b.target) ? 1 : 0;
        });
    }

    /* the same colour for a target in every chart and its card */
    function colourOf(target) {
        var names = connectors().map(function (c) {
            return str(c.target);
        });
        var i;

        statusList("history").forEach(function (h) {
            if (names.indexOf(str(h.target)) < 0) {
                names.push(str(h.target));
            }
        });
        i = names.indexOf(target);
        return COLOURS[(i < 0 ? 0 : i) % COLOURS.length];
    }

    function renderCards() {
        var list = connectors();

        draw("cards", JSON.stringify([list, !!sources.status.data]),
             function () {
                 if (!sources.status.data) {
                     return [unavailable("status")];
                 }
                 if (list.length === 0) {
                     return [empty("No connector has made an attempt yet.")];
                 }
                 return list.map(card);
             });
    }

    function card(c) {
        var t = { target: str(c.target) };
        var st = str(c.status);
        var a = c.attempts || {};
        var lat = c.latency_seconds || {};
        var quota = Array.isArray(c.quota) ? c.quota : [];
        var sw = el("span", { "class": "swatch", "aria-hidden": "true" });
        var head, body;

        sw.style.backgroundColor = colourOf(t.target);
        head = el("div", { "class": "card-head" }, sw,
                  el("h3", null, t.target),
                  el("span", { "class": "badge badge-"
                                        + (STATUS_TEXT[st] ? st : "unknown") },
                     el("span", { "aria-hidden": "true" },
                        STATUS_ICON[st] || "?"),
                     " ",
                     el("span", { "data-metric": "status",
                                  "data-target": t.target },
                        STATUS_TEXT[st] || (st || "unknown"))));

        body = el("dl", { "class": "facts" },
                  el("dt", null, "Connector"),
                  el("dd", null, str(c.connector) || DASH),
                  el("dt", null, "Breaker"),
                  el("dd", null, el("span", { "data-metric": "breaker",
                                              "data-target": t.target },
                                    str(c.breaker).replace("_", "-")
                                    || DASH)),
                  el("dt", null, "Attempts"),
                  el("dd", { "class": "attempts" },
                     metric("attempts.success", a.success, fmtCount, t),
                     " ok, ",
                     metric("attempts.retry", a.retry, fmtCount, t),
                     " retried, ",
                     metric("attempts.dead", a.dead, fmtCount, t),
                     " dead"),
                  el("dt", null, "Errors (5 min)"),
                  el("dd", null, metric("error_rate", c.error_rate,
                                        fmtPercent, t),
                     isNum(c.error_rate) ? "\u202f%" : null),
                  el("dt", null, "p50 / p90 / p99"),
                  el("dd", null,
                     metric("latency.p50", lat.p50, fmtMs, t), " / ",
                     metric("latency.p90", lat.p90, fmtMs, t), " / ",
                     metric("latency.p99", lat.p99, fmtMs, t), "\u202fms"));

        return el("article", { "class": "card", "data-target": t.target,
                               "data-status": st,
                               "aria-label": t.target + ": "
                                             + (STATUS_TEXT[st] || st) },
                  head, body, quotaBars(t.target, quota));
    }

    function quotaBars(target, quota) {
        var box = el("div", { "class": "quota" },
                     el("h4", null, "Vendor quota"));

        if (quota.length === 0) {
            box.appendChild(el("p", { "class": "muted",
                                      "data-metric": "quota.none",
                                      "data-target": target },
                               "None reported."));
            return box;
        }
        quota.forEach(function (q) {
            var l = { target: target, window: str(q.window) };
            var share = isNum(q.used) && isNum(q.limit) && q.limit > 0
                        ? q.used / q.limit : null;
            var bar = el("div", { "class": "bar" + (share >= 0.9 ? " hot"
                                                    : share >= 0.75 ? " warm"
                                                    : ""),
                                  "role": "meter",
                                  "aria-valuemin": "0",
                                  "aria-valuemax": "100",
                                  "aria-valuenow": isNum(share)
                                      ? (share * 100).toFixed(1) : "0",
                                  "aria-label": l.window + " quota used" },
                         el("div", { "class": "fill" }));

            bar.firstChild.style.width =
                (isNum(share) ? Math.min(share, 1) * 100 : 0) + "%";
            box.appendChild(el("div", { "class": "quota-row",
                                        "data-window": l.window },
                               el("span", { "class": "quota-window" },
                                  l.window),
                               bar,
                               el("span", { "class": "quota-text" },
                                  metric("quota.used", q.used, fmtCount, l),
                                  " / ",
                                  metric("quota.limit", q.limit, fmtCount, l),
                                  " (",
                                  metric("quota.share", share, fmtPercent, l),
                                  isNum(share) ? "\u202f%)" : ")")));
        });
        return box;
    }


    /* ---------------------------------------------------------------- */

    function renderCharts() {
        var s = sources.status.data;
        var hist = statusList("history");
        var now = s && isNum(s.generated_ms) ? s.generated_ms : Date.now();
        var sig = JSON.stringify([hist, Math.floor(now / BUCKET_MS), !!s,
                                  connectors().map(function (c) {
                                      return c.target;
                                  })]);

        if (state.drawn.charts === sig) {
            return;
        }
        state.drawn.charts = sig;
        drawCharts(hist, now, s ? "No attempts in the last 30 minutes"
                                : "No data: the worker status is "
                                  + "unavailable");
    }

    function drawCharts(hist, now, none) {
        var last = Math.floor(now / BUCKET_MS) * BUCKET_MS;
        var first = last - HISTORY_MS + BUCKET_MS;
        var by = {};
        var targets, thr, err, legend;

        hist.forEach(function (h) {
            var t = str(h.target);
            var b = Math.floor(h.t_ms / BUCKET_MS) * BUCKET_MS;

            if (!isNum(h.t_ms) || b < first || b > last) {
                return;
            }
            by[t] = by[t] || {};
            by[t][b] = by[t][b] || { attempts: 0, errors: 0 };
            by[t][b].attempts += isNum(h.attempts) ? h.attempts : 0;
            by[t][b].errors += isNum(h.errors) ? h.errors : 0;
        });
        targets = Object.keys(by).sort();

        thr = targets.map(function (t) {
            var pts = [];
            var b;

            for (b = first; b <= last; b += BUCKET_MS) {
                pts.push([b, by[t][b] ? by[t][b].attempts : 0]);
            }
            return { target: t, points: pts };
        });
        err = targets.map(function (t) {
            var pts = [];
            var b, x;

            for (b = first; b <= last; b += BUCKET_MS) {
                x = by[t][b];
                pts.push([b, x && x.attempts > 0
                             ? Math.min(x.errors / x.attempts, 1) * 100
                             : null]);
            }
            return { target: t, points: pts };
        });

        lineChart(document.getElementById("chart-throughput"), thr, first,
                  last, { unit: "", title: "attempts / 10 s", none: none,
                          min: 4 });
        lineChart(document.getElementById("chart-errors"), err, first, last,
                  { unit: "%", max: 100, title: "error rate", none: none });

        legend = document.getElementById("legend");
        legend.replaceChildren.apply(legend, targets.map(function (t) {
            var sw = el("span", { "class": "swatch", "aria-hidden": "true" });

            sw.style.backgroundColor = colourOf(t);
            return el("li", null, sw, t);
        }));
    }

    /* 1, 2, 5 x 10^n at or above v */
    function niceCeil(v) {
        var p, m;

        if (!(v > 0)) {
            return 1;
        }
        p = Math.pow(10, Math.floor(Math.log10(v)));
        m = v / p;
        return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
    }

    /* series: [{target, points: [[t_ms, value or null], ...]}] */
    function lineChart(node, series, t0, t1, opt) {
        var W = 560, H = 220, L = 48, R = 12, T = 12, B = 40;
        var max = opt.max || 0;
        var title = svg("title");
        var desc = svg("desc");
        var kids = [title, desc];
        var x, y, i, v, t, tick;

        series.forEach(function (s) {
            s.points.forEach(function (p) {
                if (p[1] !== null && p[1] > max) {
                    max = p[1];
                }
            });
        });
        /* four steps of a round size; counts at least 4, so that the
         * steps are whole numbers */
        max = opt.max || 4 * niceCeil(Math.max(max, opt.min || 0) / 4);

        x = function (ms) {
            return L + (ms - t0) / Math.max(t1 - t0, 1) * (W - L - R);
        };
        y = function (val) {
            return T + (1 - val / max) * (H - T - B);
        };

        title.textContent = node.getAttribute("aria-labelledby")
            ? document.getElementById(node.getAttribute("aria-labelledby"))
                  .textContent.replace(/\s+/g, " ").trim()
            : opt.title;
        desc.textContent = series.length === 0
            ? opt.none + "."
            : series.map(function (s) {
                  var last = s.points[s.points.length - 1];

                  return s.target + ": " + (last[1] === null ? "no attempts"
                      : (opt.unit === "%" ? last[1].toFixed(1) + "%"
                                          : last[1] + " attempts"))
                      + " in the last 10 s";
              }).join("; ");

        /* grid and y labels */
        for (i = 0; i <= 4; i++) {
            v = max * i / 4;
            kids.push(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v),
                                    "class": i ? "grid" : "axis" }));
            tick = svg("text", { x: L - 6, y: y(v) + 4, "class": "tick",
                                 "text-anchor": "end" });
            tick.textContent = (Number.isInteger(v) ? String(v)
                                                    : v.toFixed(1))
                               + opt.unit;
            kids.push(tick);
        }
        kids.push(svg("line", { x1: L, x2: L, y1: T, y2: H - B,
                                "class": "axis" }));

        /* x labels every 5 minutes, and "now" */
        for (t = Math.ceil(t0 / 300000) * 300000; t <= t1; t += 300000) {
            kids.push(svg("line", { x1: x(t), x2: x(t), y1: H - B,
                                    y2: H - B + 4, "class": "axis" }));
            tick = svg("text", { x: x(t), y: H - B + 16, "class": "tick",
                                 "text-anchor": "middle" });
            tick.textContent = fmtClock(t).slice(0, 5);
            kids.push(tick);
        }
        tick = svg("text", { x: (L + W - R) / 2, y: H - 4,
                             "class": "axis-title", "text-anchor": "middle" });
        tick.textContent = "time (local)";
        kids.push(tick);
        tick = svg("text", { x: 12, y: (T + H - B) / 2, "class": "axis-title",
                             "text-anchor": "middle",
                             transform: "rotate(-90 12 "
                                        + (T + H - B) / 2 + ")" });
        tick.textContent = opt.title;
        kids.push(tick);

        if (series.length === 0) {
            tick = svg("text", { x: (L + W - R) / 2, y: (T + H - B) / 2,
                                 "class": "chart-empty",
                                 "text-anchor": "middle" });
            tick.textContent = opt.none;
            kids.push(tick);
        }

        /* one polyline per run of points with values: a gap where there
         * is none (no attempt: no error rate) */
        series.forEach(function (s) {
            var runs = [[]];

            s.points.forEach(function (p) {
                if (p[1] === null) {
                    if (runs[runs.length - 1].length) {
                        runs.push([]);
                    }
                    return;
                }
                runs[runs.length - 1].push(x(p[0]).toFixed(1) + ","
                                           + y(p[1]).toFixed(1));
            });
            runs.forEach(function (r) {
                var line, dot, tip;

                if (r.length === 0) {
                    return;
                }
                if (r.length === 1) {
                    dot = r[0].split(",");
                    line = svg("circle", { cx: dot[0], cy: dot[1], r: 2.5,
                                           "class": "series",
                                           "data-target": s.target,
                                           fill: colourOf(s.target) });
                } else {
                    line = svg("polyline", { points: r.join(" "),
                                             "class": "series",
                                             "data-target": s.target,
                                             stroke: colourOf(s.target) });
                }
                tip = svg("title");
                tip.textContent = s.target;
                line.appendChild(tip);
                kids.push(line);
            });
        });

        node.replaceChildren.apply(node, kids);
    }


    /* ---------------------------------------------------------------- */

    function renderQueues() {
        var s = sources.status.data;
        var qs = statusList("queues");

        draw("queues", JSON.stringify([qs, s && s.delayed,
                                       s && s.dead_letters, !!s]),
             function () {
                 var rows;

                 if (!s) {
                     return [unavailable("status")];
                 }
                 rows = qs.map(function (q) {
                     var l = { stream: str(q.stream) };

                     return el("tr", { "data-stream": l.stream },
                               el("th", { scope: "row" },
                                  el("code", null, l.stream)),
                               el("td", null, metric("queue.length",
                                                     q.length, fmtCount, l)),
                               el("td", null, metric("queue.pending",
                                                     q.pending, fmtCount, l)),
                               el("td", null, metric(
                                   "queue.oldest_pending_seconds",
                                   q.oldest_pending_seconds, fmtSeconds, l)),
                               el("td", null, metric(
                                   "queue.oldest_entry_seconds",
                                   q.oldest_entry_seconds, fmtSeconds, l)));
                 });
                 return [
                     el("dl", { "class": "tiles" },
                        el("div", null, el("dt", null, "Delayed (retries)"),
                           el("dd", null, metric("delayed", s.delayed,
                                                 fmtCount))),
                        el("div", { "class": s.dead_letters > 0 ? "alarm"
                                                                 : null },
                           el("dt", null, "Dead letters"),
                           el("dd", null, metric("dead_letters",
                                                 s.dead_letters,
                                                 fmtCount)))),
                     rows.length
                         ? table("Streams", ["Stream", "Length", "Pending",
                                             "Oldest pending (s)",
                                             "Oldest entry (s)"],
                                 rows, "numbers")
                         : empty("No stream sampled yet.")
                 ];
             });
    }

    /* the dashboard's own requests are not the gateway's traffic */
    function notOurs(labels) {
        return str(labels.location).indexOf(base.pathname) !== 0;
    }

    function renderGateway() {
        var g = sources.gateway;
        var req = sumBy(family(g, "vantage_http_requests_total"), "class",
                        notOurs);
        var auth = sumBy(family(g, "vantage_auth_total"), "outcome");
        var rl = sumBy(family(g, "vantage_ratelimit_decisions_total"),
                       "decision");

        draw("gateway", JSON.stringify([req, auth, rl, !!g.data]),
             function () {
                 var ok = auth.ok || 0;
                 var refused = 0;
                 /* every outcome is there from the start, at zero */
                 var reasons = Object.keys(auth).filter(function (k) {
                     return k !== "ok" && auth[k] > 0;
                 }).sort();

                 if (!g.data) {
                     return [unavailable("gateway")];
                 }
                 reasons.forEach(function (k) {
                     refused += auth[k];
                 });

                 return [
                     el("h3", null, "Requests by status class"),
                     el("p", { "class": "muted" }, "All locations but the "
                        + "dashboard's own (" + base.pathname + ")."),
                     el("dl", { "class": "tiles five" },
                        CLASSES.map(function (c) {
                            return el("div", { "class": "class-" + c },
                                      el("dt", null, c),
                                      el("dd", null,
                                         metric("gateway.requests",
                                                req[c] || 0, fmtCount,
                                                { "class": c })));
                        }).reduce(function (f, n) {
                            f.appendChild(n);
                            return f;
                        }, document.createDocumentFragment())),
                     el("h3", null, "Authentication"),
                     el("dl", { "class": "tiles" },
                        el("div", null, el("dt", null, "Accepted"),
                           el("dd", null, metric("gateway.auth", ok,
                                                 fmtCount,
                                                 { outcome: "ok" }))),
                        el("div", { "class": refused ? "warn" : null },
                           el("dt", null, "Refused"),
                           el("dd", null, metric("gateway.auth", refused,
                                                 fmtCount,
                                                 { outcome: "refused" })))),
                     reasons.length
                         ? el("p", { "class": "muted reasons" },
                              "Refused: " + reasons.map(function (k) {
                                  return k.replace(/_/g, " ") + " "
                                         + fmtCount(auth[k]);
                              }).join(", ") + ".")
                         : null,
                     el("h3", null, "Rate-limit decisions"),
                     el("dl", { "class": "tiles four" },
                        DECISIONS.map(function (d) {
                            return el("div", null,
                                      el("dt", null, d.replace("_", " ")),
                                      el("dd", null,
                                         metric("gateway.ratelimit",
                                                rl[d] || 0, fmtCount,
                                                { decision: d })));
                        }).reduce(function (f, n) {
                            f.appendChild(n);
                            return f;
                        }, document.createDocumentFragment()))
                 ];
             });
    }

    function renderJobs() {
        var w = sources.worker;
        var fam = family(w, "vantage_worker_jobs_total");
        var by = {};

        if (fam && Array.isArray(fam.samples)) {
            fam.samples.forEach(function (s) {
                var l = s.labels || {};
                var t = str(l.type);

                by[t] = by[t] || {};
                if (isNum(s.value)) {
                    by[t][str(l.state)] = (by[t][str(l.state)] || 0)
                                          + s.value;
                }
            });
        }

        draw("jobs", JSON.stringify([by, !!w.data]), function () {
            var types = Object.keys(by).sort();

            if (!w.data) {
                return [unavailable("worker")];
            }
            if (types.length === 0) {
                return [empty("No job has changed state since the worker "
                              + "started.")];
            }
            return [table("Job transitions by type",
                          ["Type"].concat(JOB_STATES),
                          types.map(function (t) {
                              return el.apply(null, [
                                  "tr", { "data-type": t },
                                  el("th", { scope: "row" },
                                     el("code", null, t))
                              ].concat(JOB_STATES.map(function (st) {
                                  return el("td", null,
                                            metric("jobs", by[t][st] || 0,
                                                   fmtCount,
                                                   { type: t, state: st }));
                              })));
                          }), "numbers")];
        });
    }

    function renderFailures() {
        var s = sources.status.data;
        var list = statusList("recent_failures").slice().sort(function (a, b) {
            return (b.at_ms || 0) - (a.at_ms || 0);
        });

        draw("failures", JSON.stringify([list, !!s]), function () {
            if (!s) {
                return [unavailable("status")];
            }
            if (list.length === 0) {
                return [empty("No failed attempt recently.")];
            }
            return [table("Recent failures",
                          ["Time", "Target", "Type", "Outcome", "Status",
                           "Error"],
                          list.map(function (f) {
                              return el("tr", { "data-job-id": str(f.job_id),
                                                "class": "outcome-"
                                                         + str(f.outcome) },
                                        el("td", null, fmtClock(f.at_ms)),
                                        el("td", null, str(f.target)),
                                        el("td", null, el("code", null,
                                                          str(f.type))),
                                        el("td", null, str(f.outcome)),
                                        el("td", { "class": "n" },
                                           isNum(f.status) && f.status > 0
                                               ? String(f.status) : DASH),
                                        el("td", { "class": "error-text" },
                                           str(f.error) || DASH));
                          }), "failures")];
        });
    }


    /* ----------------------------------------------------------------
     * dead letters and replay */

    function renderDead() {
        var s = sources.status.data;
        var list = statusList("dead");
        var now = Date.now();
        var shown = {};
        var kept = [];

        list.forEach(function (d) {
            shown[str(d.job_id)] = true;
        });
        /* a job replayed from this page stays listed a while, with the
         * answer, after it has left the dead letters */
        Object.keys(state.replays).forEach(function (id) {
            var r = state.replays[id];

            if (shown[id]) {
                return;
            }
            if (r.ok && r.row && now - r.at < KEEP_REPLAYED_MS) {
                kept.push(r.row);
            } else if (!r.pending) {
                delete state.replays[id];
            }
        });

        draw("dead", JSON.stringify([list, kept, state.replays, !!s]),
             function () {
                 var rows;

                 if (!s) {
                     return [unavailable("status")];
                 }
                 rows = list.map(function (d) {
                     return deadRow(d, false);
                 }).concat(kept.map(function (d) {
                     return deadRow(d, true);
                 }));
                 if (rows.length === 0) {
                     return [empty("No dead letters.")];
                 }
                 return [table("Dead letters",
                               ["Job", "Type", "Target", "Attempts", "Died",
                                "Last error", "Replay"],
                               rows, "dead")];
             });
    }

    function deadRow(d, gone) {
        var id = str(d.job_id);
        var r = state.replays[id];
        var btn = el("button", { type: "button", "class": "replay",
                                 "data-job-id": id,
                                 "aria-label": "Replay job " + id },
                     "Replay");
        var result = el("span", { "class": "replay-result",
                                  "data-metric": "replay.result",
                                  "data-job-id": id, role: "status" });

        if (r) {
            result.textContent = r.text;
            result.setAttribute("data-replay", r.pending ? "pending"
                                : r.ok ? "replayed" : "error");
            if (isNum(r.status)) {
                result.setAttribute("data-http-status", String(r.status));
            }
            result.className += r.pending ? "" : r.ok ? " ok" : " bad";
        }
        if (gone || (r && r.pending)) {
            btn.disabled = true;
        }
        btn.addEventListener("click", function () {
            replay(d);
        });

        return el("tr", { "data-job-id": id,
                          "class": gone ? "replayed" : null },
                  el("td", null, el("code", { "class": "job-id" }, id)),
                  el("td", null, el("code", null, str(d.type))),
                  el("td", null, str(d.target)),
                  /* a replayed row is history, not what /status says */
                  el("td", { "class": "n" },
                     gone ? fmtCount(d.attempts)
                          : metric("dead.attempts", d.attempts, fmtCount,
                                   { "job-id": id })),
                  el("td", null, fmtClock(d.died_ms)),
                  el("td", { "class": "error-text" },
                     str(d.last_error) || DASH),
                  el("td", { "class": "replay-cell" }, btn, " ", result));
    }

    function replay(d) {
        var id = str(d.job_id);
        var token = adminToken();
        var headers = { Accept: "application/json" };
        var url = new URL("worker/admin/dlq/" + encodeURIComponent(id)
                          + "/replay", base);

        if (token) {
            headers.Authorization = "Bearer " + token;
        }
        state.replays[id] = { pending: true, text: "replaying…",
                              at: Date.now(), row: d };
        renderDead();

        fetch(url, { method: "POST", cache: "no-store",
                     credentials: "same-origin", headers: headers })
            .then(function (r) {
                return r.text().then(function (body) {
                    var j = null;

                    try {
                        j = JSON.parse(body);
                    } catch (e) {
                        j = null;
                    }
                    return { status: r.status, ok: r.ok, json: j,
                             statusText: r.statusText };
                });
            })
            .then(function (a) {
                var text;

                if (a.ok) {
                    text = "replayed: " + str(a.json && a.json.state
                                              || "queued")
                           + (a.json && isNum(a.json.replays)
                              ? " (replays " + a.json.replays + ")" : "");
                } else {
                    text = a.status + " " + (a.json && a.json.error
                                             ? str(a.json.error)
                                             : a.statusText || "error");
                    if (a.json && (a.json.error_description
                                   || a.json.message))
                    {
                        text += ": " + str(a.json.error_description
                                           || a.json.message);
                    }
                    if ((a.status === 401 || a.status === 403) && !token) {
                        text += " (enter an admin token above)";
                    }
                }
                state.replays[id] = { ok: a.ok, status: a.status, text: text,
                                      at: Date.now(), row: d };
            })
            .catch(function (e) {
                state.replays[id] = { ok: false, status: null, at: Date.now(),
                                      text: "no answer: " + e.message,
                                      row: d };
            })
            .then(function () {
                renderDead();
                return poll();
            });
    }


    /* ----------------------------------------------------------------
     * the admin token: this tab only, never in the URL */

    function adminToken() {
        try {
            return window.sessionStorage.getItem(TOKEN_KEY) || "";
        } catch (e) {
            return state.token || "";
        }
    }

    function setToken(t) {
        state.token = t;
        try {
            if (t) {
                window.sessionStorage.setItem(TOKEN_KEY, t);
            } else {
                window.sessionStorage.removeItem(TOKEN_KEY);
            }
        } catch (e) {
            /* storage refused (a private mode): kept in memory only */
        }
        showTokenState();
    }

    function showTokenState() {
        document.getElementById("token-state").textContent = adminToken()
            ? "An admin token is set for this tab."
            : "No admin token set.";
    }

    function setupToken() {
        var form = document.getElementById("token-form");
        var input = document.getElementById("admin-token");

        form.addEventListener("submit", function (ev) {
            var t = input.value.trim().replace(/^Bearer\s+/i, "");

            ev.preventDefault();
            input.value = "";
            setToken(t);
        });
        document.getElementById("token-forget").addEventListener("click",
            function () {
                input.value = "";
                setToken("");
            });
        showTokenState();
    }


    /* ---------------------------------------------------------------- */

    function start() {
        document.getElementById("poll-interval").textContent =
            String(intervalMs / 1000);
        setupToken();
        document.addEventListener("visibilitychange", function () {
            if (!document.hidden && state.timer === null) {
                poll();
            }
        });
        poll();
    }

    start();
}());

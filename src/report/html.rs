//! `report.html`: one self-contained page (inline CSS, the PNGs beside it by relative
//! path, nothing fetched from anywhere) that answers at a glance: the verdict, what each
//! checker found and the ops or observations behind it, the run's parameters, and when
//! each fault was in force.

use std::fmt::Write;

use faultline_checkers::{Results, Validity};
use faultline_history::OpType;
use serde_json::Value;

use super::escape::escape;
use super::history_digest::HistoryDigest;
use super::plots::{Plot, SIZE};

/// The page's style, shared with the store index.
pub const CSS: &str = "body{font-family:sans-serif;margin:1.5em auto;max-width:1250px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em}
.banner{padding:.8em 1em;font-size:1.4em;font-weight:bold;color:#fff;border-radius:4px}
.valid{background:#2e7d32}.invalid{background:#c62828}.unknown{background:#f9a825;color:#222}
.not-checked{background:#999}
.badge{padding:.1em .5em;border-radius:3px;color:#fff;font-size:.85em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:30em;font-size:.85em}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}img{max-width:100%;height:auto;border:1px solid #eee}
.missing{outline:3px solid #c62828}summary{cursor:pointer;color:#555;margin:.3em 0}#verdicts td:first-child{white-space:nowrap}
";

/// Everything the page shows.
pub struct Page<'a> {
    /// The run directory as the user named it.
    pub dir: &'a str,
    /// The checkers' results.
    pub results: &'a Results,
    /// `results.json`'s `run` section (ids, versions, seed, timings), `Null` when absent.
    pub run: &'a Value,
    /// `scenario.yaml`, verbatim, when the directory has one.
    pub scenario: Option<&'a str>,
    /// The digested history, for the fault timeline and op counts.
    pub history: &'a HistoryDigest,
    /// The plots written beside the page.
    pub plots: &'a [Plot],
    /// Notes from reading the inputs.
    pub notes: &'a [String],
}

fn validity_class(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "valid",
        Validity::Invalid => "invalid",
        Validity::Unknown => "unknown",
    }
}

/// Sort key: invalid first, then unknown, then valid.
fn verdict_rank(v: Validity) -> u8 {
    match v {
        Validity::Invalid => 0,
        Validity::Unknown => 1,
        Validity::Valid => 2,
    }
}

fn secs(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e9)
}

/// A JSON value as table-cell text: strings bare, the rest as compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// At most this many characters of one JSON block; the rest is in results.json.
const MAX_BLOCK: usize = 200_000;

fn json_block(v: &Value) -> String {
    let mut text = serde_json::to_string_pretty(v).unwrap_or_default();
    if text.len() > MAX_BLOCK {
        let mut cut = MAX_BLOCK;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n... (cut; the whole of it is in results.json)");
    }
    format!("<pre>{}</pre>", escape(&text))
}

/// Renders the page.
pub fn render(page: &Page) -> String {
    let r = page.results;
    let run = page.run;
    let mut out = String::with_capacity(64 * 1024);
    let scenario_name = run["scenario"].as_str().unwrap_or("");
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>faultline {}: {}</title>\n<style>\n{CSS}</style></head>\n<body data-verdict=\"{}\">\n",
        escape(scenario_name),
        escape(r.valid.as_str()),
        escape(r.valid.as_str())
    );
    let failing: Vec<&str> = r
        .checkers
        .iter()
        .filter(|(_, c)| c.valid == r.valid && r.valid != Validity::Valid)
        .map(|(n, _)| n.as_str())
        .collect();
    let _ = writeln!(
        out,
        "<div id=\"verdict\" class=\"banner {}\">{}{}</div>",
        validity_class(r.valid),
        escape(&r.valid.as_str().to_uppercase()),
        if failing.is_empty() {
            String::new()
        } else {
            format!(": {}", escape(&failing.join(", ")))
        }
    );
    let _ = writeln!(out, "<h1>faultline run {}</h1>", escape(page.dir));
    // The table of verdicts goes here, under the banner, once the checkers are ordered.
    let verdicts_at = out.len();

    // The run's parameters.
    out.push_str("<section id=\"run\"><h2>Run</h2><table>\n");
    let mechanisms = page.history.mechanisms();
    let (ok, fail, info) = page.history.outcome_counts();
    let mut rows: Vec<(&str, String)> = Vec::new();
    for (label, key) in [
        ("scenario", "scenario"),
        ("seed", "seed"),
        ("flavor", "flavor"),
        ("server version", "server_version"),
        ("backend", "backend"),
        ("cluster bus", "bus"),
        ("nodes", "nodes"),
        ("run id", "id"),
        ("interrupted", "interrupted"),
    ] {
        if !run[key].is_null() {
            rows.push((label, cell(&run[key])));
        }
    }
    rows.push((
        "fault mechanism",
        if mechanisms.is_empty() {
            if page.history.nemesis.is_empty() {
                "none (no faults)".into()
            } else {
                "not recorded".into()
            }
        } else {
            mechanisms.join(", ")
        },
    ));
    rows.push((
        "client ops",
        format!(
            "{} completed: {ok} ok, {fail} fail, {info} info; {} never completed",
            page.history.completions.len(),
            page.history.unfinished
        ),
    ));
    if let Some(t) = run.get("timings_s").and_then(Value::as_object) {
        let parts: Vec<String> = t
            .iter()
            .filter_map(|(k, v)| v.as_f64().map(|s| format!("{k} {s:.1}s")))
            .collect();
        rows.push(("timings", parts.join(", ")));
    }
    for (label, value) in rows {
        let _ = writeln!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(label),
            escape(&value)
        );
    }
    out.push_str("</table></section>\n");

    // Plots.
    out.push_str("<section id=\"plots\"><h2>Plots</h2>\n");
    for p in page.plots {
        let _ = writeln!(
            out,
            "<figure><img class=\"plot\" src=\"{file}\" alt=\"{title}\" width=\"{w}\" height=\"{h}\">\
             <figcaption><b>{title}</b>: {caption}</figcaption></figure>",
            file = escape(p.file),
            title = escape(p.title),
            caption = escape(&p.caption),
            w = SIZE.0,
            h = SIZE.1
        );
    }
    out.push_str("</section>\n");

    // Checkers.
    out.push_str("<section id=\"checkers\"><h2>Checkers</h2>\n");
    if r.checkers.is_empty() {
        out.push_str("<p>No checker ran: nothing was checked.</p>\n");
    }
    // What went wrong first: invalid, then unknown, then valid; by name within each.
    let mut ordered: Vec<_> = r.checkers.iter().collect();
    ordered.sort_by_key(|(name, c)| (verdict_rank(c.valid), name.as_str()));
    let mut verdicts = String::from("<table id=\"verdicts\">");
    for (name, c) in &ordered {
        let _ = write!(
            verdicts,
            "<tr><td><a href=\"#checker-{id}\">{id}</a></td><td><span class=\"badge {v}\">{v}</span></td><td>{}</td></tr>",
            escape(&c.headline()),
            id = escape(name),
            v = validity_class(c.valid),
        );
    }
    verdicts.push_str("</table>\n");
    out.insert_str(verdicts_at, &verdicts);
    for (name, c) in ordered {
        let _ = writeln!(
            out,
            "<section class=\"checker\" id=\"checker-{id}\" data-checker=\"{id}\" data-valid=\"{v}\">\
             <h3>{id} <span class=\"badge {v}\">{v}</span></h3><p>{}</p>",
            escape(&c.headline()),
            id = escape(name),
            v = validity_class(c.valid),
        );
        if name.as_str() == "linearizable" {
            out.push_str(&super::timeline::render(&c.details));
        }
        let (scalars, blocks): (Vec<_>, Vec<_>) = c
            .details
            .iter()
            .filter(|(k, _)| k.as_str() != "summary")
            .partition(|(_, v)| !v.is_array() && !v.is_object());
        // Evidence is open where it matters (invalid, unknown), folded where all is well.
        let open = if c.valid == Validity::Valid {
            ""
        } else {
            " open"
        };
        let _ = write!(out, "<details{open}><summary>counts and evidence</summary>");
        if !scalars.is_empty() {
            out.push_str("<table>");
            for (k, v) in scalars {
                let _ = write!(
                    out,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    escape(k),
                    escape(&cell(v))
                );
            }
            out.push_str("</table>\n");
        }
        for (k, v) in blocks {
            let _ = writeln!(out, "<h4>{}</h4>{}", escape(k), json_block(v));
        }
        out.push_str("</details></section>\n");
    }
    out.push_str("</section>\n");

    // Fault timeline.
    out.push_str("<section id=\"faults\"><h2>Fault timeline</h2>\n");
    if page.history.nemesis.is_empty() {
        out.push_str("<p>No nemesis ops: this run injected no faults.</p>\n");
    } else {
        out.push_str("<table><tr><th>#</th><th>action</th><th>invoked (s)</th><th>done (s)</th><th>outcome</th><th>what it did</th></tr>\n");
        for (i, a) in page.history.nemesis.iter().enumerate() {
            let (done, outcome, what) = match &a.completion {
                Some(c) => {
                    let mut what = cell(&c.value);
                    if let Some(e) = &c.error {
                        what = format!("{what} error: {e}");
                    }
                    let kind = match c.kind {
                        OpType::Ok => "ok",
                        OpType::Fail => "fail",
                        OpType::Info => "info",
                        OpType::Invoke => "invoke",
                    };
                    (secs(c.time_ns), kind, what)
                }
                None => ("-".into(), "never completed", cell(&a.invoke.value)),
            };
            let _ = writeln!(
                out,
                "<tr class=\"fault\"><td>{i}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                escape(&a.invoke.f),
                secs(a.invoke.time_ns),
                escape(&done),
                escape(outcome),
                escape(&what)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</section>\n");

    let notes: Vec<String> = r
        .notes
        .iter()
        .chain(page.notes)
        .cloned()
        .chain(run["notes"].as_array().into_iter().flatten().map(cell))
        .collect();
    if !notes.is_empty() {
        out.push_str("<section id=\"notes\"><h2>Notes</h2><ul>\n");
        for n in &notes {
            let _ = writeln!(out, "<li>{}</li>", escape(n));
        }
        out.push_str("</ul></section>\n");
    }

    if let Some(s) = page.scenario {
        let _ = writeln!(
            out,
            "<section id=\"scenario\"><h2>Scenario (as run)</h2><pre>{}</pre></section>",
            escape(s)
        );
    }
    // Marks plots that did not load (a file removed or truncated), so a reader notices,
    // and records what loaded on the page for tests that read the DOM.
    out.push_str(
        "<script>window.addEventListener('load',function(){var n=0;\
         document.querySelectorAll('img.plot').forEach(function(i){\
         i.setAttribute('data-natural-width',i.naturalWidth);\
         i.setAttribute('data-natural-height',i.naturalHeight);\
         if(i.complete&&i.naturalWidth>0){n++}else{i.classList.add('missing')}});\
         document.body.setAttribute('data-plots-loaded',n);});</script>\n",
    );
    out.push_str("</body></html>\n");
    out
}

//! The `linearizable` checker's violation, drawn as a timeline (inline SVG): one lane per
//! client process, each op a bar from its invoke to its completion (an indeterminate op
//! runs off the right edge), coloured by what the search made of it: linearized (with its
//! place in the partial order), still open when the search stopped, or the op it could not
//! get past, outlined in red. Under it, the same ops as a table.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::escape::escape;

const WIDTH: f64 = 1150.0;
const LABEL: f64 = 70.0;
const LANE: f64 = 34.0;
const BAR: f64 = 22.0;
const TOP: f64 = 30.0;

/// The page section for every violation in the `linearizable` checker's details; empty
/// when it has none.
pub fn render(details: &serde_json::Map<String, Value>) -> String {
    let Some(violations) = details.get("violations").and_then(Value::as_array) else {
        return String::new();
    };
    let mut out = String::new();
    for (i, v) in violations.iter().enumerate() {
        render_one(&mut out, i, v);
    }
    out
}

struct Bar<'a> {
    process: String,
    start: f64,
    end: Option<f64>,
    role: &'a str,
    text: String,
    index: u64,
    order: Option<u64>,
    v: &'a Value,
}

fn render_one(out: &mut String, n: usize, v: &Value) {
    let Some(ops) = v["ops"].as_array() else {
        return;
    };
    let bars: Vec<Bar> = ops
        .iter()
        .map(|op| Bar {
            process: match &op["process"] {
                Value::String(s) => s.clone(),
                other => format!("p{other}"),
            },
            start: op["invoke_ns"].as_f64().unwrap_or(0.0),
            end: op["complete_ns"].as_f64(),
            role: op["role"].as_str().unwrap_or("pending"),
            text: op["text"].as_str().unwrap_or("").to_string(),
            index: op["index"].as_u64().unwrap_or(0),
            order: op["linearized_at"].as_u64(),
            v: op,
        })
        .collect();
    if bars.is_empty() {
        return;
    }
    let t0 = bars.iter().map(|b| b.start).fold(f64::INFINITY, f64::min);
    let t1 = bars
        .iter()
        .map(|b| b.end.unwrap_or(b.start))
        .fold(f64::NEG_INFINITY, f64::max);
    // Indeterminate ops run on past the last completion, to a margin at the right.
    let span = (t1 - t0).max(1.0);
    let open_end = t1 + span * 0.08;
    let x = |t: f64| LABEL + (t - t0) / (open_end - t0) * (WIDTH - LABEL - 10.0);
    let mut lanes: BTreeMap<(u8, u64, String), usize> = BTreeMap::new();
    for b in &bars {
        let sort = match b
            .process
            .strip_prefix('p')
            .and_then(|p| p.parse::<u64>().ok())
        {
            Some(p) => (0, p, String::new()),
            None => (1, 0, b.process.clone()),
        };
        lanes.entry(sort).or_insert(0);
    }
    for (i, lane) in lanes.values_mut().enumerate() {
        *lane = i;
    }
    let lane_of = |p: &str| {
        let sort = match p.strip_prefix('p').and_then(|p| p.parse::<u64>().ok()) {
            Some(p) => (0, p, String::new()),
            None => (1, 0, p.to_string()),
        };
        lanes[&sort]
    };
    let height = TOP + LANE * lanes.len() as f64 + 40.0;
    let key = v["key"].as_str().unwrap_or("");
    let _ = writeln!(
        out,
        "<div class=\"lin-violation\" id=\"lin-violation-{n}\"><h4>Key {} ({}): the window that cannot be ordered</h4><p>{}</p>",
        escape(&format!("{key:?}")),
        escape(v["model"].as_str().unwrap_or("")),
        escape(v["explanation"].as_str().unwrap_or("")),
    );
    let _ = write!(
        out,
        "<svg class=\"lin-timeline\" id=\"lin-timeline-{n}\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" \
         aria-label=\"timeline of the ops around the violation\" style=\"font-family:sans-serif;font-size:11px\">"
    );
    out.push_str(
        "<defs><pattern id=\"lin-open\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><rect width=\"3\" height=\"6\" fill=\"#90caf9\"/></pattern></defs>",
    );
    // Lanes.
    for (sort, lane) in &lanes {
        let y = TOP + LANE * *lane as f64;
        let name = if sort.0 == 0 {
            format!("p{}", sort.1)
        } else {
            sort.2.clone()
        };
        let _ = write!(
            out,
            "<rect x=\"0\" y=\"{y}\" width=\"{WIDTH}\" height=\"{LANE}\" fill=\"{}\"/>\
             <text class=\"lane\" x=\"6\" y=\"{}\" font-weight=\"bold\">{}</text>",
            if lane % 2 == 0 { "#fafafa" } else { "#f0f0f0" },
            y + LANE / 2.0 + 4.0,
            escape(&name)
        );
    }
    // Time axis: ticks relative to the window's first invoke.
    let nanos = span >= 1e5;
    let axis_y = TOP + LANE * lanes.len() as f64 + 14.0;
    for k in 0..=5 {
        let t = t0 + (t1 - t0) * f64::from(k) / 5.0;
        let label = if nanos {
            format!("+{:.3} ms", (t - t0) / 1e6)
        } else {
            format!("+{:.0}", t - t0)
        };
        let _ = write!(
            out,
            "<line x1=\"{0}\" x2=\"{0}\" y1=\"{TOP}\" y2=\"{1}\" stroke=\"#ccc\" stroke-dasharray=\"2,3\"/>\
             <text x=\"{0}\" y=\"{2}\" text-anchor=\"middle\" fill=\"#555\">{3}</text>",
            x(t),
            axis_y - 10.0,
            axis_y + 4.0,
            escape(&label)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#555\">{}</text>",
        WIDTH - 10.0,
        axis_y + 20.0,
        if nanos {
            "time since the window's first invoke"
        } else {
            "position in the history since the window's first invoke"
        }
    );
    // Bars.
    for b in &bars {
        let lane = lane_of(&b.process);
        let y = TOP + LANE * lane as f64 + (LANE - BAR) / 2.0;
        let x0 = x(b.start);
        let x1 = x(b.end.unwrap_or(open_end)).max(x0 + 4.0);
        let (fill, stroke, width) = match b.role {
            "linearized" => ("#c8e6c9", "#2e7d32", 1.0),
            "violating" => ("#ffcdd2", "#c62828", 3.0),
            _ if b.end.is_none() => ("url(#lin-open)", "#1565c0", 1.0),
            _ => ("#bbdefb", "#1565c0", 1.0),
        };
        let label = match b.order {
            Some(o) => format!("{} [#{}]", b.text, o + 1),
            None => b.text.clone(),
        };
        let title = format!(
            "history line {}: {} ({}{})",
            b.index,
            b.text,
            b.role,
            match b.v["node"].as_str() {
                Some(node) => format!(", answered by {node}"),
                None => String::new(),
            }
        );
        let _ = write!(
            out,
            "<g class=\"op\" data-role=\"{role}\" data-index=\"{index}\"><title>{title}</title>\
             <rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{BAR}\" rx=\"3\" fill=\"{fill}\" \
             stroke=\"{stroke}\" stroke-width=\"{width}\"/>\
             <svg x=\"{tx:.1}\" y=\"{y:.1}\" width=\"{tw:.1}\" height=\"{BAR}\"><text x=\"0\" y=\"{ty}\">{label}</text></svg></g>",
            role = escape(b.role),
            index = b.index,
            title = escape(&title),
            w = x1 - x0,
            tx = x0 + 4.0,
            tw = (x1 - x0 - 6.0).max(0.0),
            ty = BAR / 2.0 + 4.0,
            label = escape(&label),
        );
        if b.role == "violating" {
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#c62828\" font-weight=\"bold\" text-anchor=\"end\">✗</text>",
                x1 - 3.0,
                y + BAR / 2.0 + 4.0
            );
        }
    }
    // Legend.
    let _ = write!(
        out,
        "<g class=\"legend\" transform=\"translate({LABEL},8)\">\
         <rect width=\"14\" height=\"12\" fill=\"#c8e6c9\" stroke=\"#2e7d32\"/><text x=\"18\" y=\"10\">linearized [#n: its place]</text>\
         <rect x=\"190\" width=\"14\" height=\"12\" fill=\"#bbdefb\" stroke=\"#1565c0\"/><text x=\"208\" y=\"10\">open, cannot be placed next</text>\
         <rect x=\"390\" width=\"14\" height=\"12\" fill=\"url(#lin-open)\" stroke=\"#1565c0\"/><text x=\"408\" y=\"10\">indeterminate (info)</text>\
         <rect x=\"550\" width=\"14\" height=\"12\" fill=\"#ffcdd2\" stroke=\"#c62828\" stroke-width=\"2\"/><text x=\"568\" y=\"10\">the op the search could not get past</text></g>"
    );
    out.push_str("</svg>\n");
    // The same ops as a table.
    out.push_str("<table class=\"lin-ops\"><tr><th>line</th><th>process</th><th>op</th><th>invoked</th><th>completed</th><th>role</th></tr>");
    for b in &bars {
        let _ = write!(
            out,
            "<tr data-role=\"{}\"><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(b.role),
            b.index,
            escape(&b.process),
            escape(&b.text),
            b.start,
            b.end.map_or_else(|| "never (info)".to_string(), |e| e.to_string()),
            escape(&match b.order {
                Some(o) => format!("linearized #{}", o + 1),
                None => b.role.to_string(),
            })
        );
    }
    out.push_str("</table></div>\n");
}

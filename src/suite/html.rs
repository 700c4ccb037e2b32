//! `suite.html`: one self-contained page. Every case (newest first) with its verdict,
//! rate and 95% interval and a link to each run's report, and a plot of every case's
//! rate and interval beside the baseline's (inline SVG: no script, no file beside it).

use std::collections::BTreeMap;
use std::fmt::Write;

use super::rate::Rate;
use super::result::{CaseResult, CaseVerdict, SuiteResult};
use crate::report::escape::escape;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:1em 0}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;font-size:14px}\
.pass{background:#e3f4e3}.fail{background:#f8d7d7}.error{background:#fde8c8}.unknown{background:#eee}\
.runs a{margin-right:.6em;white-space:nowrap}.inv{color:#b00}.flaky{color:#a60}small{color:#666}";

/// The page for `result`, plotted against `baseline` when there is one.
pub fn render(result: &SuiteResult, baseline: Option<&SuiteResult>) -> String {
    let base: BTreeMap<&str, &CaseResult> = baseline
        .map(|b| b.cases.iter().map(|c| (c.id.as_str(), c)).collect())
        .unwrap_or_default();
    let mut cases: Vec<&CaseResult> = result.cases.iter().collect();
    cases.sort_by(|a, b| b.newest().cmp(a.newest()).then(a.id.cmp(&b.id)));
    let count = |v: CaseVerdict| cases.iter().filter(|c| c.verdict == v).count();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>faultline suite {name}</title><style>{STYLE}</style></head><body>\n\
         <h1>suite {name}</h1>\n<p>{n} cases: {p} pass, {f} fail, {e} error, {u} unknown; {r} repetitions each; exit code {code}; {secs:.0} s{parts}{intr}</p>\n",
        name = escape(&result.suite),
        n = cases.len(),
        p = count(CaseVerdict::Pass),
        f = count(CaseVerdict::Fail),
        e = count(CaseVerdict::Error),
        u = count(CaseVerdict::Unknown),
        r = result.repeat,
        code = result.exit_code(),
        secs = result.seconds,
        parts = if result.partitions.is_empty() {
            String::new()
        } else {
            format!("; shards {}", escape(&result.partitions.join(", ")))
        },
        intr = if result.interrupted { "; <b>interrupted</b>" } else { "" },
    );
    out.push_str("<h2>Rates</h2>\n");
    out.push_str(&plot(&cases, &base));
    out.push_str("<h2>Cases</h2>\n<table><tr><th>case</th><th>verdict</th><th>expect</th><th>rate (95% interval)</th><th>baseline</th><th>why</th><th>runs, newest first</th></tr>\n");
    for c in &cases {
        let baseline = base.get(c.id.as_str()).map_or("-".to_string(), |b| {
            format!("{} ({})", b.rate.describe(), b.verdict.as_str())
        });
        let mut runs: Vec<_> = c.runs.iter().collect();
        runs.sort_by(|a, b| b.started.cmp(&a.started));
        let mut links = String::new();
        for r in runs {
            let verdict = format!("{:?}", r.verdict).to_lowercase();
            let class = match verdict.as_str() {
                "invalid" => " class=\"inv\"",
                _ if r.flaky_infra => " class=\"flaky\"",
                _ => "",
            };
            let label = format!(
                "seed {} #{}: {verdict}{}",
                r.seed,
                r.repetition,
                if r.flaky_infra { " (flaky-infra)" } else { "" }
            );
            let title = escape(&format!(
                "{} {}; {}",
                r.started,
                r.version.as_deref().unwrap_or(""),
                r.error.as_deref().unwrap_or(&r.reproduce)
            ));
            match &r.run_dir {
                Some(d) => {
                    let _ = write!(
                        links,
                        "<a{class} href=\"{}/report.html\" title=\"{title}\">{}</a> ",
                        escape(d),
                        escape(&label)
                    );
                }
                None => {
                    let _ = write!(
                        links,
                        "<span{class} title=\"{title}\">{}</span> ",
                        escape(&label)
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "<tr class=\"{v}\"><td>{id}<br><small>{file}</small></td><td>{v}{changed}</td><td>{expect}</td><td>{rate}</td><td>{baseline}</td><td>{reason}</td><td class=\"runs\">{links}</td></tr>",
            v = c.verdict.as_str(),
            id = escape(&c.id),
            file = escape(&c.scenario_file),
            changed = if c.rate_changed { "<br><small>rate changed</small>" } else { "" },
            expect = escape(&c.expect.describe()),
            rate = escape(&c.rate.describe()),
            baseline = escape(&baseline),
            reason = escape(&c.reason),
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

/// One row per case: the rate (dot) and its 95% interval (bar), the baseline's in grey
/// just below; the canary's bar or the known rate as a red tick.
fn plot(cases: &[&CaseResult], base: &BTreeMap<&str, &CaseResult>) -> String {
    const LEFT: f64 = 330.0;
    const WIDTH: f64 = 420.0;
    const ROW: f64 = 26.0;
    let height = 30.0 + ROW * cases.len() as f64;
    let x = |v: f64| LEFT + WIDTH * v.clamp(0.0, 1.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n",
        w = LEFT + WIDTH + 20.0
    );
    for i in 0..=10 {
        let v = f64::from(i) / 10.0;
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"20\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"14\" text-anchor=\"middle\">{v:.1}</text>",
            x(v),
            height - 4.0
        );
    }
    let bar = |svg: &mut String, r: &Rate, y: f64, colour: &str| {
        if r.n == 0 {
            return;
        }
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/><circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{colour}\"/>",
            x(r.low),
            x(r.high),
            x(r.rate)
        );
    };
    for (i, c) in cases.iter().enumerate() {
        let y = 30.0 + ROW * i as f64;
        let colour = match c.verdict {
            CaseVerdict::Pass => "#2a7",
            CaseVerdict::Fail => "#c22",
            CaseVerdict::Error => "#d80",
            CaseVerdict::Unknown => "#888",
        };
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} {}</text>",
            LEFT - 8.0,
            y + 4.0,
            escape(&c.id),
            escape(&format!("{}/{}", c.rate.k, c.rate.n))
        );
        let mark = match &c.expect {
            super::spec::Expect::Invalid { min_rate, .. } => Some(*min_rate),
            super::spec::Expect::Known { rate, .. } => Some(*rate),
            super::spec::Expect::Valid => None,
        };
        if let Some(m) = mark {
            let _ = writeln!(
                svg,
                "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"{2:.1}\" stroke=\"#c22\" stroke-width=\"2\"/>",
                x(m),
                y - 8.0,
                y + 12.0
            );
        }
        bar(&mut svg, &c.rate, y, colour);
        if let Some(b) = base.get(c.id.as_str()) {
            bar(&mut svg, &b.rate, y + 8.0, "#999");
        }
    }
    svg.push_str("</svg>\n<p><small>Dot: rate; bar: its 95% interval (this result in colour, the baseline grey below it); red tick: a canary's bar or a known finding's stated rate.</small></p>\n");
    svg
}

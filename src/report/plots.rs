//! The report's PNG plots, drawn with plotters' bitmap backend.
//!
//! Text needs a font and plotters' `ab_glyph` backend reads none by itself (no
//! fontconfig at run time): [`register_font`] loads DejaVu Sans from the Debian package
//! `fonts-dejavu-core` (installed by `scripts/install-deps`), or the file named by
//! `$FAULTLINE_FONT`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use faultline_history::OpType;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::downsample::{thin, Grid};
use super::episode::Episode;
use super::history_digest::{Band, HistoryDigest};
use super::topology_digest::{Belief, TopologyDigest};

/// Where Debian's fonts-dejavu-core puts the font the plots use.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Every plot's size in pixels (width, height); the report's `<img>` tags state it too.
pub const SIZE: (u32, u32) = (1200, 480);

/// One plot of the report: its file name and what it shows.
#[derive(Debug, Clone)]
pub struct Plot {
    /// The PNG's name inside the run directory.
    pub file: &'static str,
    /// A title for the report's figure.
    pub title: &'static str,
    /// A sentence under it.
    pub caption: String,
}

/// The font family name plots ask for.
const FAMILY: &str = "sans-serif";

/// Loads the plots' font once per process.
///
/// # Errors
/// Names the missing file and the package that provides it.
pub fn register_font() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = std::env::var_os("FAULTLINE_FONT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_FONT));
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "the plots' font {} cannot be read ({e}): install Debian's fonts-dejavu-core \
                 (bash scripts/install-deps does), or point $FAULTLINE_FONT at a .ttf file",
                path.display()
            )
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font(FAMILY, style, bytes)
                .map_err(|_| format!("{} is not a usable TrueType font", path.display()))?;
        }
        Ok(())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

const BAND: RGBColor = RGBColor(255, 205, 160);
const OK: RGBColor = RGBColor(70, 130, 200);
const FAIL: RGBColor = RGBColor(220, 50, 40);
const INFO: RGBColor = RGBColor(240, 160, 0);

/// A colour per series: a palette that stays apart on white.
fn palette(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
        RGBColor(188, 189, 34),
        RGBColor(127, 127, 127),
        RGBColor(255, 127, 14),
        RGBColor(214, 39, 40),
    ];
    COLORS[i % COLORS.len()]
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Pixels on the right of every plot for its key, so the key never hides data.
const KEY_WIDTH: u32 = 210;

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws one plot into an RGB buffer, `draw` given the chart's area and the key's beside
/// it, and writes the picture to `path` as PNG (encoded here with the `png` crate rather
/// than plotters' `image`-based encoder, which would pull in an image library).
fn render(path: &Path, draw: impl FnOnce(&Area<'_>, &Area<'_>) -> Result<()>) -> Result<()> {
    let (w, h) = SIZE;
    let mut pixels = vec![255u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (chart, key) = root.split_horizontally(w - KEY_WIDTH);
        draw(&chart, &key)?;
        root.present().map_err(err)?;
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&pixels))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// How one key entry is drawn.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Fill(RGBColor),
    Faded(RGBColor),
    Band,
    Line(RGBColor),
    Dot(RGBColor),
    Cross(RGBColor),
    Triangle(RGBColor),
    Outline(RGBColor),
}

/// Draws the key: one row per entry, from the top of the key area.
fn draw_key(area: &Area<'_>, entries: &[(String, Mark)]) -> Result<()> {
    for (i, (label, mark)) in entries.iter().enumerate() {
        let y = 50 + i as i32 * 20;
        let (x0, x1) = (6, 20);
        match *mark {
            Mark::Fill(c) => area.draw(&Rectangle::new([(x0, y - 5), (x1, y + 5)], c.filled())),
            Mark::Faded(c) => area.draw(&Rectangle::new(
                [(x0, y - 5), (x1, y + 5)],
                c.mix(0.35).filled(),
            )),
            Mark::Band => area.draw(&Rectangle::new(
                [(x0, y - 5), (x1, y + 5)],
                BAND.mix(0.45).filled(),
            )),
            Mark::Line(c) => {
                area.draw(&PathElement::new(vec![(x0, y), (x1, y)], c.stroke_width(2)))
            }
            Mark::Dot(c) => area.draw(&Circle::new((13, y), 4, c.filled())),
            Mark::Cross(c) => area.draw(&Cross::new((13, y), 4, c.stroke_width(2))),
            Mark::Triangle(c) => area.draw(&TriangleMarker::new((13, y), 5, c.filled())),
            Mark::Outline(c) => area.draw(&Rectangle::new(
                [(x0, y - 5), (x1, y + 5)],
                c.stroke_width(2),
            )),
        }
        .map_err(err)?;
        area.draw(&Text::new(
            label.clone(),
            (x1 + 8, y - 7),
            (FAMILY, 13).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Writes every plot into `dir`; returns them in report order.
///
/// # Errors
/// If the font is missing or a PNG cannot be written.
pub fn write_all(
    dir: &Path,
    history: &HistoryDigest,
    topology: Option<&TopologyDigest>,
    episodes: &[Episode],
) -> Result<Vec<Plot>> {
    register_font()?;
    let bands = history.bands();
    let t_max = secs(
        history.end_ns.max(
            topology
                .and_then(|t| {
                    t.rows
                        .iter()
                        .flat_map(|r| r.segments.last())
                        .map(|s| s.end_ns)
                        .max()
                })
                .unwrap_or(0),
        ),
    )
    .max(0.001);
    let mut plots = vec![
        latency(dir, history, &bands, t_max)?,
        throughput(dir, history, &bands, t_max)?,
    ];
    if let Some(t) = topology {
        plots.push(topology_timeline(dir, t, episodes, &bands, t_max)?);
    }
    plots.push(redirects(dir, history, &bands, t_max)?);
    Ok(plots)
}

/// A chart of counts per second over the run (x: time in seconds), with its mesh drawn:
/// the throughput, client-window and redirect plots share it.
fn per_second_chart<'a, DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    y_desc: &str,
    t_max: f64,
    y_max: f64,
) -> Result<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(y_desc)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 13))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// Draws column `k` of per-bucket counts (buckets `bucket` seconds wide) as a rate per
/// second; returns the column's total for the key.
fn draw_rate<'a, DB: DrawingBackend + 'a, X, Y, C: AsRef<[u64]>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    counts: &[C],
    k: usize,
    bucket: f64,
    color: RGBColor,
) -> Result<u64>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(LineSeries::new(
            counts
                .iter()
                .enumerate()
                .map(|(i, c)| (i as f64 * bucket, c.as_ref()[k] as f64 / bucket)),
            color.stroke_width(2),
        ))
        .map_err(err)?;
    Ok(counts.iter().map(|c| c.as_ref()[k]).sum())
}

fn draw_bands<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    bands: &[Band],
    y: (f64, f64),
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .draw_series(bands.iter().map(|b| {
            Rectangle::new(
                [(secs(b.start_ns), y.0), (secs(b.end_ns), y.1)],
                BAND.mix(0.45).filled(),
            )
        }))
        .map_err(err)?;
    Ok(())
}

/// Latency of every op over time (x: invoke time), by function and outcome, on a log
/// axis, thinned (see `downsample`) with every fail and info kept.
fn latency(dir: &Path, h: &HistoryDigest, bands: &[Band], t_max: f64) -> Result<Plot> {
    let path = dir.join("latency.png");
    let mut drawn = 0usize;
    render(&path, |area, key_area| {
        let mut key: Vec<(String, Mark)> = Vec::new();
        let ms = |ns: u64| (ns as f64 / 1e6).max(0.01);
        let y_max = h
            .completions
            .iter()
            .map(|c| ms(c.latency_ns))
            .fold(1.0, f64::max)
            * 1.5;
        let y_min = h
            .completions
            .iter()
            .map(|c| ms(c.latency_ns))
            .fold(f64::INFINITY, f64::min)
            .min(y_max / 10.0)
            .max(0.01);
        let mut chart = ChartBuilder::on(area)
            .caption("Latency of every op", (FAMILY, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..t_max, (y_min..y_max).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("latency (ms)")
            .label_style((FAMILY, 13))
            .draw()
            .map_err(err)?;
        if !bands.is_empty() {
            key.push(("fault in force".into(), Mark::Band));
        }
        draw_bands(&mut chart, bands, (y_min, y_max))?;
        let grid = Grid {
            columns: 600,
            rows: 240,
            x: (0.0, t_max),
            y: (y_min.log10(), y_max.log10()),
        };
        let outcomes = [
            (OpType::Ok, "ok"),
            (OpType::Fail, "fail"),
            (OpType::Info, "info"),
        ];
        for (fi, f) in h.functions.iter().enumerate() {
            for (outcome, label) in outcomes {
                let series: Vec<(f64, f64)> = h
                    .completions
                    .iter()
                    .filter(|c| c.f as usize == fi && c.outcome == outcome)
                    .map(|c| (secs(c.invoke_ns), ms(c.latency_ns)))
                    .collect();
                if series.is_empty() {
                    continue;
                }
                let always = outcome != OpType::Ok;
                let keep = thin(series.iter().map(|&(x, y)| (x, y.log10(), always)), &grid);
                drawn += keep.len();
                let base = match outcome {
                    OpType::Ok => palette(fi),
                    OpType::Fail => FAIL,
                    _ => INFO,
                };
                let size = if always { 3 } else { 2 };
                let style = base.filled();
                let mark = match outcome {
                    OpType::Fail => {
                        chart
                            .draw_series(
                                keep.iter()
                                    .map(|&i| Cross::new(series[i], size, base.stroke_width(2))),
                            )
                            .map_err(err)?;
                        Mark::Cross(base)
                    }
                    OpType::Info => {
                        chart
                            .draw_series(
                                keep.iter()
                                    .map(|&i| TriangleMarker::new(series[i], size + 1, style)),
                            )
                            .map_err(err)?;
                        Mark::Triangle(base)
                    }
                    _ => {
                        chart
                            .draw_series(keep.iter().map(|&i| Circle::new(series[i], size, style)))
                            .map_err(err)?;
                        Mark::Dot(base)
                    }
                };
                key.push((format!("{f} {label} ({})", series.len()), mark));
            }
        }
        draw_key(key_area, &key)
    })?;
    Ok(Plot {
        file: "latency.png",
        title: "Latency",
        caption: format!(
            "{} ops by function and outcome (x: invoke time; circles ok, crosses fail, triangles info); {drawn} points drawn, one per few pixels for ok ops, every fail and info; shaded: a fault in force",
            h.completions.len()
        ),
    })
}

/// How wide a time bucket is for `t_max` seconds: about 200 buckets, at least 10 ms.
fn bucket_for(t_max: f64) -> f64 {
    const NICE: [f64; 12] = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
    ];
    let want = t_max / 200.0;
    NICE.into_iter()
        .find(|&b| b >= want)
        .unwrap_or_else(|| (want / 60.0).ceil() * 60.0)
}

/// Completions per second over time by outcome.
fn throughput(dir: &Path, h: &HistoryDigest, bands: &[Band], t_max: f64) -> Result<Plot> {
    let path = dir.join("throughput.png");
    let bucket = bucket_for(t_max);
    render(&path, |area, key_area| {
        let mut key: Vec<(String, Mark)> = Vec::new();
        let n = (t_max / bucket).ceil() as usize + 1;
        let mut counts = vec![[0u64; 3]; n];
        for c in &h.completions {
            let i = ((secs(c.complete_ns()) / bucket) as usize).min(n - 1);
            let k = match c.outcome {
                OpType::Ok => 0,
                OpType::Fail => 1,
                _ => 2,
            };
            counts[i][k] += 1;
        }
        let y_max = counts
            .iter()
            .flat_map(|c| c.iter())
            .map(|&c| c as f64 / bucket)
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart =
            per_second_chart(area, "Throughput", "completions per second", t_max, y_max)?;
        if !bands.is_empty() {
            key.push(("fault in force".into(), Mark::Band));
        }
        draw_bands(&mut chart, bands, (0.0, y_max))?;
        for (k, (label, color)) in [("ok", OK), ("fail", FAIL), ("info", INFO)]
            .into_iter()
            .enumerate()
        {
            let total: u64 = counts.iter().map(|c| c[k]).sum();
            if total == 0 && k > 0 {
                continue;
            }
            chart
                .draw_series(LineSeries::new(
                    counts
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (i as f64 * bucket, c[k] as f64 / bucket)),
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            key.push((format!("{label} ({total})"), Mark::Line(color)));
        }
        draw_key(key_area, &key)
    })?;
    Ok(Plot {
        file: "throughput.png",
        title: "Throughput",
        caption: format!(
            "client completions per second by outcome, in {:.0} ms buckets; shaded: a fault in force",
            bucket * 1000.0
        ),
    })
}

/// The client's failed and indeterminate ops per second, with each promotion the
/// observer saw (a vertical line) and the client's error window after it (shaded, until its
/// first ok on the promoted shard; to the plot's end when none came): the `client-errors`
/// checker's measure, drawn.
pub fn client_windows(
    dir: &Path,
    h: &HistoryDigest,
    windows: &[(f64, Option<f64>)],
    client: &str,
) -> Result<Plot> {
    register_font()?;
    let path = dir.join("client-windows.png");
    let t_max = secs(h.end_ns).max(0.001);
    let bucket = bucket_for(t_max);
    render(&path, |area, key_area| {
        let n = (t_max / bucket).ceil() as usize + 1;
        let mut counts = vec![[0u64; 2]; n];
        for c in &h.completions {
            let k = match c.outcome {
                OpType::Fail => 0,
                OpType::Info => 1,
                _ => continue,
            };
            let i = ((secs(c.complete_ns()) / bucket) as usize).min(n - 1);
            counts[i][k] += 1;
        }
        let y_max = counts
            .iter()
            .flat_map(|c| c.iter())
            .map(|&c| c as f64 / bucket)
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = per_second_chart(
            area,
            &format!("Error windows: {client}"),
            "failed / indeterminate per second",
            t_max,
            y_max,
        )?;
        chart
            .draw_series(windows.iter().map(|&(at, w)| {
                let end = w.map_or(t_max, |w| (at + w).max(at + bucket / 4.0));
                Rectangle::new([(at, 0.0), (end, y_max)], BAND.mix(0.45).filled())
            }))
            .map_err(err)?;
        chart
            .draw_series(windows.iter().map(|&(at, _)| {
                PathElement::new(vec![(at, 0.0), (at, y_max)], BLACK.stroke_width(1))
            }))
            .map_err(err)?;
        let mut key: Vec<(String, Mark)> = vec![
            ("error window".into(), Mark::Band),
            ("promotion seen".into(), Mark::Line(BLACK)),
        ];
        for (k, (label, color)) in [("fail", FAIL), ("info", INFO)].into_iter().enumerate() {
            let total = draw_rate(&mut chart, &counts, k, bucket, color)?;
            key.push((format!("{label} ({total})"), Mark::Line(color)));
        }
        draw_key(key_area, &key)
    })?;
    let mut closed: Vec<f64> = windows.iter().filter_map(|w| w.1).collect();
    closed.sort_by(f64::total_cmp);
    let p50 = closed.get(closed.len().saturating_sub(1) / 2);
    Ok(Plot {
        file: "client-windows.png",
        title: "Client error windows",
        caption: format!(
            "{client}: {} promotions seen by the observer; shaded until the client's first ok on \
             the promoted shard (p50 {}, max {}); failed and indeterminate client ops per \
             second in {:.0} ms buckets",
            windows.len(),
            p50.map_or("-".into(), |v| format!("{:.0} ms", v * 1000.0)),
            closed
                .last()
                .map_or("-".into(), |v| format!("{:.0} ms", v * 1000.0)),
            bucket * 1000.0
        ),
    })
}

/// Redirect hops per second over time by kind.
fn redirects(dir: &Path, h: &HistoryDigest, bands: &[Band], t_max: f64) -> Result<Plot> {
    let path = dir.join("redirects.png");
    render(&path, |area, key_area| {
        let mut key: Vec<(String, Mark)> = Vec::new();
        let bucket = bucket_for(t_max);
        let n = (t_max / bucket).ceil() as usize + 1;
        let kinds = h.redirect_kinds.len();
        let mut counts = vec![vec![0u64; kinds.max(1)]; n];
        for r in &h.redirects {
            let i = ((secs(r.time_ns) / bucket) as usize).min(n - 1);
            counts[i][r.kind as usize] += 1;
        }
        let y_max = counts
            .iter()
            .flat_map(|c| c.iter())
            .map(|&c| c as f64 / bucket)
            .fold(1.0, f64::max)
            * 1.1;
        let caption = if h.redirects.is_empty() {
            "Redirects (none followed)".to_string()
        } else {
            "Redirects followed".to_string()
        };
        let mut chart = per_second_chart(area, &caption, "redirects per second", t_max, y_max)?;
        if !bands.is_empty() {
            key.push(("fault in force".into(), Mark::Band));
        }
        draw_bands(&mut chart, bands, (0.0, y_max))?;
        for (k, kind) in h.redirect_kinds.iter().enumerate() {
            let color = palette(k);
            let total = draw_rate(&mut chart, &counts, k, bucket, color)?;
            key.push((format!("{kind} ({total})"), Mark::Line(color)));
        }
        draw_key(key_area, &key)
    })?;
    Ok(Plot {
        file: "redirects.png",
        title: "Redirects",
        caption: format!(
            "{} redirect hops followed by clients (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, REDIRECT) per second, by kind",
            h.redirects.len()
        ),
    })
}

/// Per shard and observer, which node the observer believed primary, coloured by node;
/// episodes from the checkers outlined on the observer's rows.
fn topology_timeline(
    dir: &Path,
    t: &TopologyDigest,
    episodes: &[Episode],
    bands: &[Band],
    t_max: f64,
) -> Result<Plot> {
    let path = dir.join("topology.png");
    render(&path, |area, key_area| {
        let mut key: Vec<(String, Mark)> = Vec::new();
        let rows = t.rows.len().max(1) as f64;
        let labels: Vec<String> = t
            .rows
            .iter()
            .map(|r| format!("{} @{}", r.shard, r.observer))
            .collect();
        let mut chart = ChartBuilder::on(area)
            .caption(
                "Topology: who each observer believed primary, per shard",
                (FAMILY, 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(140)
            .build_cartesian_2d(0f64..t_max, 0f64..rows)
            .map_err(err)?;
        let label_of = |y: &f64| -> String {
            let i = y.floor() as usize;
            if (y - y.floor() - 0.5).abs() < 1e-6 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc("time (s)")
            .y_labels(0)
            .label_style((FAMILY, 11))
            .draw()
            .map_err(err)?;
        // Row labels by hand: one per row, centred.
        for (i, _) in t.rows.iter().enumerate() {
            let y = i as f64 + 0.5;
            chart
                .draw_series(std::iter::once(Text::new(
                    label_of(&y),
                    (0.0, y),
                    (FAMILY, 11).into_font().color(&BLACK).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Right,
                            plotters::style::text_anchor::VPos::Center,
                        ),
                    ),
                )))
                .map_err(err)?;
        }
        if !bands.is_empty() {
            key.push(("fault in force".into(), Mark::Band));
        }
        draw_bands(&mut chart, bands, (0.0, rows))?;
        let color_of = |name: &str| -> RGBColor {
            let i = t.nodes.iter().position(|n| n == name).unwrap_or(0);
            palette(i)
        };
        for (i, row) in t.rows.iter().enumerate() {
            let y0 = i as f64 + 0.1;
            let y1 = i as f64 + 0.9;
            chart
                .draw_series(row.segments.iter().filter_map(|s| {
                    let (x0, x1) = (
                        secs(s.start_ns),
                        secs(s.end_ns.max(s.start_ns + 20_000_000)),
                    );
                    let style = match &s.belief {
                        Belief::Primary(n) => color_of(n).filled(),
                        Belief::OwnerFlaggedReplica(n) => color_of(n).mix(0.35).filled(),
                        Belief::Unowned => BLACK.filled(),
                        Belief::NoAnswer => return None,
                    };
                    Some(Rectangle::new([(x0, y0), (x1, y1)], style))
                }))
                .map_err(err)?;
        }
        // Legend: one entry per node, plus the special states.
        for name in &t.nodes {
            key.push((format!("{name} primary"), Mark::Fill(color_of(name))));
        }
        key.push((
            "faded: owner flagged replica".to_string(),
            Mark::Faded(RGBColor(60, 60, 60)),
        ));
        key.push(("no owner (unowned slots)".into(), Mark::Fill(BLACK)));
        // Episodes: outlined across every row of their observer.
        let mut labelled = std::collections::HashSet::new();
        for e in episodes {
            // A loop's outline sits inside a slot-coverage one, so both show when they
            // coincide (they do in the seed bugs: the loop leaves the shard's slots on a
            // replica).
            let (color, inset) = if e.checker == "replication-loop" {
                (FAIL, 0.2)
            } else {
                (RGBColor(110, 0, 170), 0.02)
            };
            let x0 = secs(e.first_ns);
            let x1 = secs(e.last_ns.max(e.first_ns + 20_000_000));
            let marked: Vec<usize> = t
                .rows
                .iter()
                .enumerate()
                .filter(|(_, r)| e.marks(r))
                .map(|(i, _)| i)
                .collect();
            // Nothing matched (a shard the first view did not have): the observer's rows.
            let marked = if marked.is_empty() {
                t.rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.observer == e.observer)
                    .map(|(i, _)| i)
                    .collect()
            } else {
                marked
            };
            for i in marked {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, i as f64 + inset), (x1, i as f64 + 1.0 - inset)],
                        color.stroke_width(3),
                    )))
                    .map_err(err)?;
                if labelled.insert(e.checker.clone()) {
                    key.push((format!("{} episode", e.checker), Mark::Outline(color)));
                }
            }
        }
        draw_key(key_area, &key)
    })?;
    Ok(Plot {
        file: "topology.png",
        title: "Topology timeline",
        caption: format!(
            "{} polls ({} failed, left blank); faded: the slot owner was flagged replica in that view; outlined: episodes the replication-loop and slot-coverage checkers reported",
            t.observations, t.failed
        ),
    })
}

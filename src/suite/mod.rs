//! `faultline suite`: many scenarios x targets x seeds, repeated, judged against what each
//! case expects (valid, a canary's detection rate, a known finding), sharded across CI
//! runners, merged and compared against a baseline.
//!
//! - [`spec`]: suite files and their cases; [`partition`]: `--partition hash|slice:M/N`.
//! - [`exec`]: running a shard's cases (each repetition a normal run in the store).
//! - [`rate`]: k of n with a Wilson 95% interval; [`result`]: suite.json and judging.
//! - [`output`]: writing suite.json, junit.xml and suite.html ([`html`]).
//! - [`merge`]: joining shard outputs; [`compare`]: classifying against a baseline.

pub mod compare;
pub mod exec;
pub mod html;
pub mod merge;
pub mod output;
pub mod partition;
pub mod rate;
pub mod result;
pub mod spec;

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use serde_json::json;

use crate::cli::{ListFormat, SuiteAction, SuiteArgs, SuiteCompareArgs, SuiteMergeArgs};
use crate::exit::{self, Failure};

use self::result::{ListedCase, SuiteResult, FORMAT};
use self::spec::{Case, Suite};

/// `faultline suite ...`.
///
/// # Errors
/// Bad input (254) for an unusable suite file, option or input directory; harness error
/// (255) when outputs cannot be written.
pub async fn command(args: SuiteArgs) -> Result<u8, Failure> {
    match args.action {
        Some(SuiteAction::Merge(m)) => merge_command(&m),
        Some(SuiteAction::Compare(c)) => compare_command(&c),
        None => run_command(args).await,
    }
}

/// How `--list` and suite.json describe a case.
pub fn listed(case: &Case) -> ListedCase {
    ListedCase {
        id: case.id.clone(),
        scenario: case.scenario.name.clone(),
        scenario_file: case.scenario_file.display().to_string(),
        target: case.target.label(),
        seeds: case.seeds.clone(),
        expect: case.expect.clone(),
    }
}

async fn run_command(args: SuiteArgs) -> Result<u8, Failure> {
    let run = args.run;
    let file = run.suite.ok_or_else(|| {
        Failure::bad_input(anyhow!(
            "give a suite file, e.g. faultline suite suites/canary.yaml"
        ))
    })?;
    let suite = Suite::load(&file).map_err(Failure::bad_input)?;
    if run.repeat == 0 {
        return Err(Failure::bad_input(anyhow!("--repeat must be at least 1")));
    }
    if let Some(t) = run.time_limit {
        if !t.is_finite() || t <= 0.0 {
            return Err(Failure::bad_input(anyhow!(
                "--time-limit must be greater than 0, got {t}"
            )));
        }
    }
    for id in &run.case {
        if !suite.cases.iter().any(|c| &c.id == id) {
            return Err(Failure::bad_input(anyhow!(
                "--case {id}: no such case in {}; `faultline suite {} --list` shows them",
                file.display(),
                file.display()
            )));
        }
    }
    let chosen: Vec<&Case> = suite
        .cases
        .iter()
        .enumerate()
        .filter(|(i, c)| run.partition.is_none_or(|p| p.contains(*i, &c.id)))
        .filter(|(_, c)| run.case.is_empty() || run.case.contains(&c.id))
        .map(|(_, c)| c)
        .collect();
    if run.list {
        print_list(&chosen, run.format).context("writing the list")?;
        return Ok(exit::VALID);
    }
    let out = match &run.out {
        Some(o) => o.clone(),
        None => crate::store::create_run_dir(&run.store.join("suites"), &suite.name)?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let overrides = exec::Overrides {
        repeat: run.repeat,
        seed: run.seed,
        backend: run.backend,
        time_limit: run.time_limit,
        store: run.store.clone(),
    };
    eprintln!(
        "faultline: suite {}: {} of {} cases{}, {} repetition(s); output {}",
        suite.name,
        chosen.len(),
        suite.cases.len(),
        run.partition
            .map(|p| format!(" (shard {p})"))
            .unwrap_or_default(),
        run.repeat,
        out.display()
    );
    let clock = std::time::Instant::now();
    let (cases, interrupted) = exec::run_cases(&suite, &chosen, &overrides, &out).await;
    let result = SuiteResult {
        format: FORMAT.into(),
        suite: suite.name.clone(),
        file: suite.file.display().to_string(),
        listed: suite.cases.iter().map(listed).collect(),
        partitions: run
            .partition
            .map(|p| vec![p.to_string()])
            .unwrap_or_default(),
        repeat: run.repeat,
        seconds: clock.elapsed().as_secs_f64(),
        interrupted,
        cases,
    };
    let baseline = match &run.baseline {
        Some(b) => Some(output::read(b).map_err(Failure::bad_input)?.0),
        None => None,
    };
    output::write_all(&out, &result, baseline.as_ref())?;
    print!("{}", result.table());
    println!("suite: {} ({:.0} s)", out.display(), result.seconds);
    Ok(result.exit_code())
}

fn print_list(cases: &[&Case], format: ListFormat) -> anyhow::Result<()> {
    let text = match format {
        ListFormat::Text => cases.iter().map(|c| format!("{}\n", c.id)).collect(),
        ListFormat::Json => {
            let list: Vec<ListedCase> = cases.iter().map(|c| listed(c)).collect();
            format!("{}\n", serde_json::to_string_pretty(&list)?)
        }
        ListFormat::GhaMatrix => {
            let include: Vec<_> = cases.iter().map(|c| json!({ "case": c.id })).collect();
            format!("{}\n", json!({ "include": include }))
        }
    };
    print!("{text}");
    Ok(())
}

fn merge_command(args: &SuiteMergeArgs) -> Result<u8, Failure> {
    let mut inputs = Vec::new();
    for d in &args.dirs {
        inputs.push(output::read(d).map_err(Failure::bad_input)?);
    }
    let merged = merge::merge(inputs, &args.out).map_err(Failure::bad_input)?;
    let baseline = match &args.baseline {
        Some(b) => Some(output::read(b).map_err(Failure::bad_input)?.0),
        None => None,
    };
    output::write_all(&args.out, &merged, baseline.as_ref())?;
    print!("{}", merged.table());
    println!("merged: {}", args.out.display());
    Ok(merged.exit_code())
}

fn compare_command(args: &SuiteCompareArgs) -> Result<u8, Failure> {
    let (now, _) = output::read(&args.result).map_err(Failure::bad_input)?;
    let (before, _) = output::read(&args.baseline).map_err(Failure::bad_input)?;
    let rows = compare::compare(&now, &before);
    let md = compare::markdown(&now, &args.baseline.display().to_string(), &rows);
    match &args.summary {
        Some(path) => append(path, &md)?,
        None => print!("{md}"),
    }
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&rows).context("encoding the comparison")?,
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let new = rows
        .iter()
        .filter(|r| r.class == compare::Class::NewFailure)
        .count();
    eprintln!("faultline: suite compare: {new} new failure(s)");
    Ok(if new > 0 { exit::INVALID } else { exit::VALID })
}

/// Appends (a step summary file collects every step's Markdown).
fn append(path: &PathBuf, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

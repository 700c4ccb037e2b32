//! `faultline export --edn`: a faultline history as Jepsen `history.edn`, so Knossos and
//! Elle users can run their tools on faultline's runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use faultline_history::import;

use crate::cli::ExportArgs;
use crate::exit::{self, Failure};

/// The file a run directory's export goes to by default.
pub const EDN_FILE: &str = "history.edn";

/// `faultline export --edn PATH [-o OUT]`.
///
/// # Errors
/// Bad input (254) when the history cannot be read; harness error (255) when the output
/// cannot be written.
pub fn command(args: &ExportArgs) -> Result<u8, Failure> {
    let (ops, out) = if args.path.is_dir() {
        let history = args.path.join(faultline_checkers::run_data::HISTORY_FILE);
        let (ops, _) = crate::analyze::read_history_file(&history)?;
        let out = args
            .output
            .clone()
            .unwrap_or_else(|| args.path.join(EDN_FILE));
        (ops, out)
    } else {
        let (ops, _) = crate::analyze::read_history_file(&args.path)?;
        (
            ops,
            args.output.clone().unwrap_or_else(|| PathBuf::from("-")),
        )
    };
    let text = import::to_edn(&ops);
    write_out(&out, &text)?;
    if out != Path::new("-") {
        eprintln!("{} ops written to {}", ops.len(), out.display());
    }
    Ok(exit::VALID)
}

fn write_out(out: &Path, text: &str) -> Result<(), Failure> {
    if out == Path::new("-") {
        std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("writing to standard output")?;
    } else {
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

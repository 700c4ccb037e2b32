//! Exit codes (Jepsen's), the contract nightly CI gates on.

use std::process::ExitCode;

use faultline_checkers::Validity;

/// Every checker said valid.
pub const VALID: u8 = 0;
/// Some checker found an anomaly.
pub const INVALID: u8 = 1;
/// Some checker could not decide, and none found an anomaly.
pub const UNKNOWN: u8 = 2;
/// The command line, a scenario file or a stored run was unusable.
pub const BAD_INPUT: u8 = 254;
/// faultline itself failed (could not start servers, lost its store, ...).
pub const HARNESS_ERROR: u8 = 255;

/// The exit code for a verdict.
pub fn for_validity(v: Validity) -> u8 {
    match v {
        Validity::Valid => VALID,
        Validity::Invalid => INVALID,
        Validity::Unknown => UNKNOWN,
    }
}

/// An error that knows its exit code: bad input (254) versus harness failure (255).
#[derive(Debug)]
pub struct Failure {
    /// The exit code to end with.
    pub code: u8,
    /// What went wrong, with its context chain.
    pub error: anyhow::Error,
}

impl Failure {
    /// The user gave us something unusable.
    pub fn bad_input(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: BAD_INPUT,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    /// Anything not classified otherwise is the harness's own failure.
    fn from(error: E) -> Failure {
        Failure {
            code: HARNESS_ERROR,
            error: error.into(),
        }
    }
}

/// Turns a command's result into the process exit code, printing the error chain.
pub fn finish(result: Result<u8, Failure>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, error }) => {
            eprintln!("faultline: error: {error:#}");
            ExitCode::from(code)
        }
    }
}

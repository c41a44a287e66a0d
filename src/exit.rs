//! Exit codes, the contract with CI systems and scripts:
//! 0 valid, 1 invalid, 2 unknown, 3 harness error (SSH, setup), 64 usage error.

use std::process::ExitCode;

use faultline_checkers::Validity;

pub const VALID: u8 = 0;
pub const INVALID: u8 = 1;
pub const UNKNOWN: u8 = 2;
pub const HARNESS: u8 = 3;
pub const USAGE: u8 = 64;

/// Bad input from the user (arguments, inventory, options): exits 64.
/// Any other error reaching `main` is a harness error and exits 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shorthand for returning a usage error from anywhere in the CLI.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

pub fn for_validity(v: Validity) -> ExitCode {
    ExitCode::from(match v {
        Validity::Valid => VALID,
        Validity::Invalid => INVALID,
        Validity::Unknown => UNKNOWN,
    })
}

/// Maps an error that reached `main` to its exit code.
pub fn for_error(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.is::<UsageError>()) {
        ExitCode::from(USAGE)
    } else {
        ExitCode::from(HARNESS)
    }
}

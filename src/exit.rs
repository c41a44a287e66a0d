//! Exit codes, the contract with CI systems and scripts:
//! 0 valid, 1 invalid, 2 unknown, 3 harness error (SSH, setup), 64 usage error.
//! Every command maps verdicts and errors to codes here and nowhere else.

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

/// A verdict's code.
pub fn code(v: Validity) -> u8 {
    match v {
        Validity::Valid => VALID,
        Validity::Invalid => INVALID,
        Validity::Unknown => UNKNOWN,
    }
}

pub fn for_validity(v: Validity) -> ExitCode {
    ExitCode::from(code(v))
}

/// The code over several results: invalid dominates (a found bug is the news), then a
/// harness error (the harness did not do what was asked), then unknown, then valid.
/// `None` for no results at all.
pub fn worst(codes: impl IntoIterator<Item = u8>) -> Option<u8> {
    const ORDER: [u8; 5] = [INVALID, USAGE, HARNESS, UNKNOWN, VALID];
    let rank = |c: u8| ORDER.iter().position(|x| *x == c).unwrap_or(1);
    codes.into_iter().min_by_key(|c| rank(*c))
}

/// An error's code: 64 for a usage error anywhere in its chain, else 3.
pub fn code_for_error(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<UsageError>()) {
        USAGE
    } else {
        HARNESS
    }
}

/// Maps an error that reached `main` to its exit code.
pub fn for_error(err: &anyhow::Error) -> ExitCode {
    ExitCode::from(code_for_error(err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_dominates_then_harness_errors_then_unknown() {
        assert_eq!(worst([VALID, UNKNOWN, INVALID, HARNESS]), Some(INVALID));
        assert_eq!(worst([VALID, UNKNOWN, HARNESS]), Some(HARNESS));
        assert_eq!(worst([VALID, UNKNOWN]), Some(UNKNOWN));
        assert_eq!(worst([VALID, VALID]), Some(VALID));
        assert_eq!(worst([]), None);
    }
}

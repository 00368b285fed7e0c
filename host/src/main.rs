//! The `keygate` command: admin work on API keys, and `verify`.
//!
//! Exit status: 0 success (or allow), 1 deny (from `verify`), 2 error.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}

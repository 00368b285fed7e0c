//! `keygate completions SHELL` and `keygate man`: generated from the
//! parser's own definitions (clap_complete, clap_mangen).

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, CliError, CmdResult, Ctx};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    shell: Shell,
}

/// Print the completion script for a shell on stdout.
pub fn cmd_completions(_: &Ctx, a: CompletionsArgs) -> CmdResult {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "keygate", &mut out);
    write_out(&out)
}

/// Print the man page (roff) on stdout: `keygate man > keygate.1`.
pub fn cmd_man(_: &Ctx) -> CmdResult {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(CliError::Output)?;
    write_out(&out)
}

fn write_out(bytes: &[u8]) -> CmdResult {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

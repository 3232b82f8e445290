//! The `strongroom` binary: parses the command line and hands it to the library (`cli::main`), where
//! the server and every admin command live.

use clap::Parser;

fn main() -> std::process::ExitCode {
    strongroom::cli::main(strongroom::cli::Cli::parse())
}

use clap::Parser;

fn main() -> std::process::ExitCode {
    strongroom::cli::main(strongroom::cli::Cli::parse())
}

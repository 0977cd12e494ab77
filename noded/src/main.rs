//! The `noded` binary.

// Everything it does is in the library; its `unsafe` is in `noded::sys` only.
#![forbid(unsafe_code)]

use clap::Parser;
use noded::cli::{normalize_args, run, Cli, Exit};

fn main() {
    let args = normalize_args(std::env::args().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(Exit::Ok) => {}
        Ok(Exit::Code(code)) => std::process::exit(code),
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
    }
}

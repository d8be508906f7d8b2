//! `flowgate-conform`: see the crate doc and `--help`.

use std::process::ExitCode;

use clap::Parser;
use flowgate_conform::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = async { anyhow::Ok(flowgate_conform::run(cli.options()?).await?) }.await;
    match outcome {
        Ok(report) => {
            if cli.json {
                println!("{:#}", report.json());
            } else {
                print!("{}", report.text());
            }
            if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("flowgate-conform: {e:#}");
            ExitCode::from(2)
        }
    }
}

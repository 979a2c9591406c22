//! The symdeploy binary: parse the command line, set up logging, run, and turn
//! an error into an operator's message and an exit code.

use clap::Parser;

fn main() {
    let cli = symdeploy::cli::Cli::parse();
    symdeploy::output::init_tracing();
    let code = match symdeploy::run(cli) {
        Ok(()) => 0,
        Err(e) => {
            if !e.is_reported() {
                symdeploy::output::report(&e);
            }
            e.exit_code()
        }
    };
    symdeploy::output::close_log();
    std::process::exit(code);
}

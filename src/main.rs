//! The symdeploy binary: parse the command line, set up logging, run, and turn
//! an error into an operator's message and an exit code.

use clap::Parser;

fn main() {
    let cli = symdeploy::cli::Cli::parse();
    if cli.command.only_reads() {
        // `symdeploy status | head` must end quietly like any Unix filter,
        // not panic on a closed pipe. Only for commands that change nothing:
        // a deploy must outlive a pusher who hung up.
        // SAFETY: single-threaded here, and SIG_DFL installs no handler code.
        let _ = unsafe {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGPIPE,
                nix::sys::signal::SigHandler::SigDfl,
            )
        };
    }
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

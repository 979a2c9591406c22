//! The symdeploy binary; everything it does starts in the library's `main`.

fn main() -> std::process::ExitCode {
    symdeploy::main()
}

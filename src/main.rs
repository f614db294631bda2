fn main() -> std::process::ExitCode {
    sockwatch::cli::run(std::env::args_os())
}

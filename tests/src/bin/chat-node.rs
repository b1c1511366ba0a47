//! The `chat-server` binary under another name, so the end-to-end tests can run server nodes
//! as separate processes.

fn main() -> std::process::ExitCode {
    server::cli::main()
}

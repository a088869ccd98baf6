#![forbid(unsafe_code)]
//! Exim's pipe transport runs this for every pipe delivery (force_command).

fn main() {
    // A bug in cagepipe must not bounce mail: report it and defer (75).
    std::panic::set_hook(Box::new(|info| {
        cagepipe::log::to_stderr(&format!("internal error: {info}"));
        cagepipe::sys::exit_now(cagepipe::error::exit::TEMPFAIL);
    }));
    match cagepipe::run(std::env::args_os().collect()) {
        cagepipe::Outcome::Exit(code) => std::process::exit(code),
        cagepipe::Outcome::Signal(sig) => cagepipe::die_from_signal(sig),
    }
}

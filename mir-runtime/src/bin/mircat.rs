//! mircat: read, filter, merge and summarise Mir event logs. See
//! [`mir_runtime::eventlog::cli`] for the options; this binary knows the runtime's payload types.

fn main() {
    std::process::exit(mir_runtime::eventlog::cli::run(std::env::args_os()));
}

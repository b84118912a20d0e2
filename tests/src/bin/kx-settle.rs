//! Opens the extension store at `--root` (default `/`) the way every writer does, which
//! settles a change that a crashed process left unfinished, and exits. The crash tests
//! run it as "the next start" after a process was aborted mid-change.

use std::path::PathBuf;
use std::process::ExitCode;

use kairos_extensionsd::engine::{Config, Engine, full_message};

fn main() -> ExitCode {
    let root = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
    let opened = Config::load(&root, None).map_err(|e| full_message(&e)).and_then(|config| {
        let refresher = Engine::exec_refresher(&root, &config);
        Engine::open(&root, config, refresher).map_err(|e| full_message(&e))
    });
    match opened {
        Ok(_) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kx-settle: {message}");
            ExitCode::FAILURE
        }
    }
}

//! The web client's own suites, run as part of `cargo test --workspace`: the SDK unit tests
//! (node's test runner, fake timers) and the browser end-to-end tests (headless Chromium
//! driven by playwright-core against the `chat-node` binary, which serves the client
//! embedded in it).
//!
//! Needs Node.js 20+ and Debian's Chromium (`apt-get install -y chromium`); `.ci/run`
//! installs what is missing. npm packages are installed here (`npm ci`) when absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// npm ci must not run twice at once in one web/ folder.
static NPM: Mutex<()> = Mutex::new(());

fn web_dir() -> PathBuf {
    e2e::crate_path("../web")
}

fn npm_ready() {
    let _guard = NPM.lock().unwrap_or_else(|e| e.into_inner());
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is needed for the web client tests: install Node.js 20+ (see README)"
    );
    if web_dir().join("node_modules/playwright-core").is_dir() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(web_dir())
        .status()
        .expect("npm runs");
    assert!(status.success(), "`npm ci` in web/ failed");
}

fn run_npm_script(script: &str, envs: &[(&str, String)]) {
    npm_ready();
    let mut cmd = Command::new("npm");
    cmd.args(["run", "--silent", script]).current_dir(web_dir());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("npm runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Show node's report (its summary lines: "# pass N", "# fail N") in the test output.
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "`npm run {script}` failed (see its report above)"
    );
    assert!(
        stdout.contains("# fail 0"),
        "`npm run {script}` reported failures or ran nothing"
    );
    assert!(
        !stdout.contains("# pass 0"),
        "`npm run {script}` ran no test"
    );
}

#[test]
fn the_client_sdk_unit_tests_pass() {
    run_npm_script("test", &[]);
}

#[test]
fn the_web_client_passes_its_browser_tests_in_headless_chromium() {
    let chromium = PathBuf::from("/usr/bin/chromium");
    assert!(
        chromium.is_file(),
        "Chromium is needed for the browser tests: `apt-get update && apt-get install -y chromium`"
    );
    let bin = e2e::node_binary();
    run_npm_script(
        "test:browser",
        &[("CHAT_SERVER_BIN", bin.to_string_lossy().into_owned())],
    );
}

//! Test support (feature `testing`): a real S3-compatible server, moto's standalone server,
//! started once per test binary on a free loopback port, and a fresh bucket per test. A
//! test that needs it and cannot start it fails, saying how to install it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::BlobConfig;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Runs moto's server in-process and exits as soon as its parent (this test binary) is
/// gone, so no server outlives the tests: libtest has no hook to stop it at the end.
const LAUNCHER: &str = r#"
import os, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from moto.server import main
main(["-H", "127.0.0.1", "-p", sys.argv[1]])
"#;

const INSTALL: &str = "moto's S3 server is needed for these tests: \
    install it with `python3 -m pip install 'moto[server]'` (.ci/run does)";

static MOTO: OnceLock<Result<String, String>> = OnceLock::new();
static MOTO_CHILD: Mutex<Option<Child>> = Mutex::new(None);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn start_moto() -> Result<String, String> {
    let port = free_port();
    // Its log goes to an unnamed file, read only if it fails to start (a pipe nobody reads
    // would block or break it).
    let log = tempfile::tempfile().map_err(|e| e.to_string())?;
    let log_for_child = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new("python3")
        .args(["-c", LAUNCHER, &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_for_child))
        .spawn()
        .map_err(|e| format!("cannot run python3 ({e}); {INSTALL}"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let mut stderr = String::new();
            let mut log = log;
            let _ = log.seek(SeekFrom::Start(0));
            let _ = log.read_to_string(&mut stderr);
            return Err(format!(
                "moto's server exited ({status}): {stderr}\n{INSTALL}"
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "moto's server did not listen on {addr} within 30 s; {INSTALL}"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    *MOTO_CHILD.lock().unwrap() = Some(child);
    Ok(format!("http://{addr}"))
}

/// The endpoint of this binary's moto server (started on first use); panics with the
/// install hint when it cannot start.
pub fn moto_endpoint() -> String {
    match MOTO.get_or_init(start_moto) {
        Ok(endpoint) => endpoint.clone(),
        Err(message) => panic!("{message}"),
    }
}

/// A new bucket on the moto server, and the `[blobs]` settings that reach it.
pub async fn fresh_bucket() -> BlobConfig {
    let endpoint = moto_endpoint();
    let bucket = format!("test-{}", uuid::Uuid::new_v4());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );
    BlobConfig {
        url: Some(format!("s3://{bucket}")),
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
    }
}

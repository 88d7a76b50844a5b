//! Structures submitting releases to a hub over real libp2p connections (TCP on loopback),
//! through the real `maillage serve` and `maillage submit` processes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{maillage, run, run_err, run_json, run_ok};

/// A running `maillage serve`, killed (SIGTERM first) when dropped.
struct Served {
    child: Child,
    address: String,
}

impl Served {
    fn start(dir: &str) -> Served {
        let mut child = maillage()
            .args(["serve", "--dir", dir, "--listen", "/ip4/127.0.0.1/tcp/0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("serve printed its address");
        Served { child, address }
    }

    /// Stops with SIGTERM and returns whether it exited cleanly.
    fn stop(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn structure(root: &std::path::Path, name: &str, seed: u32) -> String {
    let dir = root.join(name).display().to_string();
    run_ok(&[
        "init",
        "--dir",
        &dir,
        "--name",
        name,
        "--code-insee",
        "69385",
    ]);
    let csv = root.join(format!("{name}.csv")).display().to_string();
    run_ok(&[
        "generate",
        "--out",
        &csv,
        "--seed",
        &seed.to_string(),
        "--months",
        "1",
    ]);
    run_ok(&["import", "--dir", &dir, &csv]);
    run_ok(&["release", "--dir", &dir, "--period", "2026-09"]);
    dir
}

#[test]
fn structures_submit_over_libp2p_and_the_hub_logs_them() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hub = tmp.path().join("hub").display().to_string();
    run_ok(&["init", "--dir", &hub, "--role", "hub", "--name", "Hub"]);
    let a = structure(tmp.path(), "a", 1);
    let b = structure(tmp.path(), "b", 2);
    let outsider = structure(tmp.path(), "outsider", 3);
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &a]);
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &b]);

    let served = Served::start(&hub);
    let receipt = run_json(&[
        "submit",
        "--dir",
        &a,
        "--period",
        "2026-09",
        "--to",
        &served.address,
        "--json",
    ]);
    assert_eq!(receipt["index"], json!(0), "{receipt}");
    let again = run_json(&[
        "submit",
        "--dir",
        &a,
        "--period",
        "2026-09",
        "--to",
        &served.address,
        "--json",
    ]);
    assert_eq!(again, receipt, "a resent release gets the same receipt");
    let second = run_json(&[
        "submit",
        "--dir",
        &b,
        "--period",
        "2026-09",
        "--to",
        &served.address,
        "--json",
    ]);
    assert_eq!(second["index"], json!(1));
    let refused = run_err(&[
        "submit",
        "--dir",
        &outsider,
        "--period",
        "2026-09",
        "--to",
        &served.address,
    ]);
    assert!(refused.contains("not a member"), "{refused}");
    let nothing = run_err(&[
        "submit",
        "--dir",
        &a,
        "--period",
        "2026-10",
        "--to",
        &served.address,
    ]);
    assert!(nothing.contains("no release of 2026-10"), "{nothing}");
    assert!(served.stop(), "serve stops cleanly on SIGTERM");

    // The log survived the daemon: aggregate, export and audit it offline.
    run_ok(&["aggregate", "--dir", &hub, "--period", "2026-09"]);
    let bundle = tmp.path().join("bundle").display().to_string();
    run_ok(&[
        "log", "export", "--dir", &hub, "--period", "2026-09", "--out", &bundle,
    ]);
    let out = run(&["audit", &bundle, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit json");
    assert_eq!(report["ok"], json!(true), "{report}");
    assert_eq!(report["releases_verified"], json!(2));
}

#[test]
fn an_unreachable_hub_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let a = structure(tmp.path(), "a", 1);
    // A port nobody listens on, with a made-up peer id of a valid form.
    let hub = tmp.path().join("hub").display().to_string();
    run_ok(&["init", "--dir", &hub, "--role", "hub", "--name", "Hub"]);
    let served = Served::start(&hub);
    let peer = served
        .address
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    drop(served);
    let addr = format!("/ip4/127.0.0.1/tcp/9/p2p/{peer}");
    let err = run_err(&[
        "submit",
        "--dir",
        &a,
        "--period",
        "2026-09",
        "--to",
        &addr,
        "--timeout",
        "10",
    ]);
    assert!(err.contains("hub"), "{err}");
}

//! Two hosts: a hub and its structures in separate network namespaces joined by a veth pair,
//! so releases cross a real (virtual) network link rather than loopback.
//!
//! Needs root (creating namespaces). Without it the test says so on stderr and returns: the
//! CI machine runs as root, so there it always runs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{maillage_bin, run_json, run_ok};

/// Network namespaces and a veth pair, removed when dropped.
struct Hosts {
    hub: String,
    structures: String,
    hub_ip: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Hosts {
    fn create() -> Option<Hosts> {
        let id = std::process::id() % 10_000;
        let hub = format!("mlg-hub-{id}");
        let structures = format!("mlg-str-{id}");
        let (veth_h, veth_s) = (format!("mlgh{id}"), format!("mlgs{id}"));
        let net = 10 + id % 200;
        let hub_ip = format!("10.{net}.77.1");
        let str_ip = format!("10.{net}.77.2");
        if !ip(&["netns", "add", &hub]) {
            return None;
        }
        let hosts = Hosts {
            hub,
            structures,
            hub_ip,
        };
        let ok = ip(&["netns", "add", &hosts.structures])
            && ip(&[
                "link", "add", &veth_h, "type", "veth", "peer", "name", &veth_s,
            ])
            && ip(&["link", "set", &veth_h, "netns", &hosts.hub])
            && ip(&["link", "set", &veth_s, "netns", &hosts.structures])
            && ip(&[
                "-n",
                &hosts.hub,
                "addr",
                "add",
                &format!("{}/24", hosts.hub_ip),
                "dev",
                &veth_h,
            ])
            && ip(&[
                "-n",
                &hosts.structures,
                "addr",
                "add",
                &format!("{str_ip}/24"),
                "dev",
                &veth_s,
            ])
            && ip(&["-n", &hosts.hub, "link", "set", &veth_h, "up"])
            && ip(&["-n", &hosts.structures, "link", "set", &veth_s, "up"])
            && ip(&["-n", &hosts.hub, "link", "set", "lo", "up"])
            && ip(&["-n", &hosts.structures, "link", "set", "lo", "up"]);
        ok.then_some(hosts)
    }

    /// `maillage ARGS` inside namespace `ns`.
    fn maillage(ns: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(maillage_bin())
            .env_remove("MAILLAGE_LOG")
            .env("NO_COLOR", "1");
        cmd
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and so the pair.
        ip(&["netns", "del", &self.hub]);
        ip(&["netns", "del", &self.structures]);
    }
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines of `reader` on a thread; returns the first that contains `needle`.
fn wait_for_line(
    reader: impl std::io::Read + Send + 'static,
    needle: &'static str,
    secs: u64,
) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if line.contains(needle) && tx.send(line).is_err() {
                return;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(secs)).ok()
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
        "35238",
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
        "--commune",
        "35238",
    ]);
    run_ok(&["import", "--dir", &dir, &csv]);
    run_ok(&["release", "--dir", &dir, "--period", "2026-09"]);
    dir
}

#[test]
fn releases_cross_a_veth_link_between_two_namespaces() {
    let Some(hosts) = Hosts::create() else {
        eprintln!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let hub = tmp.path().join("hub").display().to_string();
    run_ok(&[
        "init",
        "--dir",
        &hub,
        "--role",
        "hub",
        "--name",
        "Hub Bretagne",
    ]);
    let a = structure(tmp.path(), "a", 11);
    let b = structure(tmp.path(), "b", 12);
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &a]);
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &b]);

    let listen = format!("/ip4/{}/tcp/0", hosts.hub_ip);
    let mut child = Hosts::maillage(&hosts.hub)
        .args(["serve", "--dir", &hub, "--http", "off", "--listen", &listen])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the hub in its namespace");
    let stdout = child.stdout.take().expect("stdout");
    let hub_daemon = Killed(child);
    let address = wait_for_line(stdout, "listening ", 30)
        .and_then(|l| l.strip_prefix("listening ").map(str::to_owned))
        .expect("the hub printed its address");
    assert!(address.contains(&hosts.hub_ip), "{address}");

    // A one-shot submission from the structures' namespace, across the link.
    let out = Hosts::maillage(&hosts.structures)
        .args([
            "submit", "--dir", &a, "--period", "2026-09", "--to", &address, "--json",
        ])
        .output()
        .expect("run submit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).expect("receipt JSON");
    assert_eq!(receipt["index"], json!(0), "{receipt}");

    // The outbox of a structure daemon in the other namespace.
    let mut child = Hosts::maillage(&hosts.structures)
        .args([
            "-v", "serve", "--dir", &b, "--http", "off", "--peer", &address,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the structure daemon");
    let stderr = child.stderr.take().expect("stderr");
    let structure_daemon = Killed(child);
    let started = Instant::now();
    assert!(
        wait_for_line(stderr, "receipt stored", 60).is_some(),
        "the structure daemon delivered within 60 s"
    );
    eprintln!("delivered across namespaces in {:?}", started.elapsed());
    drop(structure_daemon);
    drop(hub_daemon);

    // Both releases are in the hub's log, once each: aggregate, export and audit offline.
    run_ok(&["aggregate", "--dir", &hub, "--period", "2026-09"]);
    let bundle = tmp.path().join("bundle").display().to_string();
    run_ok(&[
        "log", "export", "--dir", &hub, "--period", "2026-09", "--out", &bundle,
    ]);
    let report = run_json(&["audit", &bundle, "--json"]);
    assert_eq!(report["ok"], json!(true), "{report}");
    assert_eq!(report["releases_verified"], json!(2), "{report}");
}

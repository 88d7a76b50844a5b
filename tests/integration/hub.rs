//! A hub through the real `maillage` program: members' releases accepted into the log with
//! receipts, resends acknowledged once stored once, non-members and equivocations refused,
//! aggregates signed, bundles exported and audited, tampering caught.

use std::path::Path;

use maillage_node::Identity;
use maillage_protocol::SignedRelease;
use serde_json::{Value, json};

use crate::support::{run, run_err, run_json, run_ok};

struct World {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    hub: String,
    structures: Vec<String>,
    releases: Vec<String>,
}

fn structure(root: &Path, i: usize, commune: &str) -> (String, String) {
    let dir = root.join(format!("s{i}")).display().to_string();
    run_ok(&[
        "init",
        "--dir",
        &dir,
        "--name",
        &format!("Structure {i}"),
        "--code-insee",
        commune,
    ]);
    let csv = root.join(format!("s{i}.csv")).display().to_string();
    run_ok(&[
        "generate",
        "--out",
        &csv,
        "--seed",
        &(100 + i).to_string(),
        "--from",
        "2026-09",
        "--months",
        "1",
        "--commune",
        commune,
    ]);
    run_ok(&["import", "--dir", &dir, &csv]);
    let release = root
        .join(format!("s{i}-2026-09.json"))
        .display()
        .to_string();
    run_ok(&[
        "release", "--dir", &dir, "--period", "2026-09", "--out", &release,
    ]);
    (dir, release)
}

fn world(members: usize) -> World {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().to_path_buf();
    let hub = root.join("hub").display().to_string();
    run_ok(&[
        "init",
        "--dir",
        &hub,
        "--role",
        "hub",
        "--name",
        "Hub Auvergne-Rhône-Alpes",
        "--code-insee",
        "69123",
    ]);
    let mut structures = Vec::new();
    let mut releases = Vec::new();
    for (i, commune) in ["69385", "38185", "2A004"].iter().enumerate() {
        let (dir, release) = structure(&root, i, commune);
        if i < members {
            run_ok(&["members", "add", "--dir", &hub, "--from-node", &dir]);
        }
        structures.push(dir);
        releases.push(release);
    }
    World {
        _tmp: tmp,
        root,
        hub,
        structures,
        releases,
    }
}

#[test]
fn members_releases_are_logged_with_receipts_and_resends_are_stored_once() {
    let w = world(3);
    let receipts = w.root.join("receipts").display().to_string();
    let mut args = vec!["accept", "--dir", &w.hub, "--json", "--receipts", &receipts];
    args.extend(w.releases.iter().map(String::as_str));
    let v = run_json(&args);
    assert_eq!(v["log_size"], json!(3));
    let results = v["results"].as_array().cloned().unwrap_or_default();
    let mut indices: Vec<u64> = results.iter().filter_map(|r| r["index"].as_u64()).collect();
    indices.sort_unstable();
    assert_eq!(indices, vec![0, 1, 2]);
    assert_eq!(
        std::fs::read_dir(&receipts).map(|d| d.count()).unwrap_or(0),
        3
    );

    // Sending one again: acknowledged with the same receipt, stored once.
    let again = run_json(&["accept", "--dir", &w.hub, "--json", &w.releases[1]]);
    assert_eq!(again["log_size"], json!(3));
    assert_eq!(again["results"][0]["new"], json!(false));
    let first = results
        .iter()
        .find(|r| r["file"] == json!(w.releases[1]))
        .expect("result");
    assert_eq!(again["results"][0]["receipt"], first["receipt"]);
}

#[test]
fn non_members_and_forged_releases_are_refused() {
    let w = world(2);
    let err = run_err(&["accept", "--dir", &w.hub, &w.releases[2]]);
    assert!(err.contains("not a member"), "{err}");
    let text = std::fs::read_to_string(&w.releases[0]).expect("release");
    let mut v: Value = serde_json::from_str(&text).expect("json");
    v["cells"][0]["value"] = json!(v["cells"][0]["value"].as_i64().unwrap_or(0) + 5);
    let forged = w.root.join("forged.json");
    std::fs::write(&forged, v.to_string()).expect("write");
    let err = run_err(&["accept", "--dir", &w.hub, &forged.display().to_string()]);
    assert!(err.contains("invalid release"), "{err}");
    let v = run_json(&["members", "list", "--dir", &w.hub, "--json"]);
    assert_eq!(v.as_array().map(Vec::len), Some(2));
}

/// A second, different release signed by the same structure for the same period.
fn equivocate(structure_dir: &str, release_file: &str, out: &Path) {
    let identity = Identity::read(&Path::new(structure_dir).join("node.key")).expect("key");
    let text = std::fs::read_to_string(release_file).expect("release");
    let signed = SignedRelease::from_json(&text).expect("parse");
    let (mut release, _) = signed.into_parts();
    release.cells[0].value += 1;
    let second = release.sign(identity.signing_key()).expect("sign");
    std::fs::write(out, second.to_json_pretty()).expect("write");
}

#[test]
fn equivocation_is_refused_kept_and_reported_by_the_audit() {
    let w = world(3);
    let mut args = vec!["accept", "--dir", &w.hub];
    args.extend(w.releases.iter().map(String::as_str));
    run_ok(&args);
    let second = w.root.join("second.json");
    equivocate(&w.structures[0], &w.releases[0], &second);
    let err = run_err(&["accept", "--dir", &w.hub, &second.display().to_string()]);
    assert!(err.contains("equivocation"), "{err}");
    run_ok(&["aggregate", "--dir", &w.hub, "--period", "2026-09"]);
    let bundle = w.root.join("bundle").display().to_string();
    run_ok(&[
        "log", "export", "--dir", &w.hub, "--period", "2026-09", "--out", &bundle,
    ]);
    let report = audit_json(&bundle);
    assert_eq!(report["ok"], json!(false));
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    assert!(
        findings.iter().any(|f| f["kind"] == json!("equivocation")),
        "{report}"
    );
}

fn audit_json(bundle: &str) -> Value {
    let out = run(&["audit", bundle, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "audit printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn an_untouched_bundle_passes_and_tampered_copies_fail() {
    let w = world(3);
    let mut args = vec!["accept", "--dir", &w.hub];
    args.extend(w.releases[..2].iter().map(String::as_str));
    run_ok(&args);
    run_ok(&["accept", "--dir", &w.hub, &w.releases[2]]);
    let agg = run_json(&[
        "aggregate",
        "--dir",
        &w.hub,
        "--period",
        "2026-09",
        "--json",
    ]);
    assert_eq!(agg["contributions"].as_array().map(Vec::len), Some(3));
    let bundle = w.root.join("bundle");
    let bundle_s = bundle.display().to_string();
    run_ok(&[
        "log", "export", "--dir", &w.hub, "--period", "2026-09", "--out", &bundle_s,
    ]);
    let report = audit_json(&bundle_s);
    assert_eq!(report["ok"], json!(true), "{report}");
    assert_eq!(report["releases_verified"], json!(3));
    run_ok(&["audit", &bundle_s]);

    // The aggregate's sums are the sums of the releases.
    let releases: Vec<Value> = std::fs::read_to_string(bundle.join("releases.jsonl"))
        .expect("releases")
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    let sum: i64 = releases
        .iter()
        .filter_map(|l| {
            l["release"]["cells"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["indicator"] == "beneficiaires"))
        })
        .filter_map(|c| c["value"].as_i64())
        .sum();
    let cell = agg["cells"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["indicator"] == "beneficiaires"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(cell["sum"].as_i64(), Some(sum));

    let tamper = |name: &str, file: &str, edit: &dyn Fn(String) -> String| {
        let copy = w.root.join(format!("tampered-{name}"));
        copy_dir(&bundle, &copy);
        let path = copy.join(file);
        let text = std::fs::read_to_string(&path).expect("bundle file");
        let changed = edit(text.clone());
        assert_ne!(changed, text, "{name}: the edit changed nothing");
        std::fs::write(&path, changed).expect("write");
        let report = audit_json(&copy.display().to_string());
        assert_eq!(
            report["ok"],
            json!(false),
            "{name} went unnoticed: {report}"
        );
        assert!(
            !run(&["audit", &copy.display().to_string()])
                .status
                .success()
        );
        report
    };
    tamper("value", "releases.jsonl", &|t| {
        replace_first_number_after(&t, "\"value\":")
    });
    tamper("omitted", "releases.jsonl", &|t| {
        t.lines().skip(1).map(|l| format!("{l}\n")).collect()
    });
    tamper("duplicated", "releases.jsonl", &|t| {
        let first = t.lines().next().unwrap_or_default().to_owned();
        format!("{t}{first}\n")
    });
    tamper("aggregate-sum", "aggregate.json", &|t| {
        replace_first_number_after(&t, "\"sum\":")
    });
    tamper("checkpoint-root", "checkpoints.json", &|t| {
        flip_hex_after(&t, "\"root\"")
    });
    tamper("inclusion-proof", "proofs.json", &|t| {
        flip_hex_after(&t, "\"proof\"")
    });
    tamper("receipt", "receipts.jsonl", &|t| {
        replace_first_number_after(&t, "\"timestamp\":")
    });
    tamper("budget", "manifest.json", &|t| {
        t.replace("\"budget\": 1.0", "\"budget\": 0.5")
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// Adds 1 to the first integer after `key`.
fn replace_first_number_after(text: &str, key: &str) -> String {
    let Some(start) = text.find(key) else {
        return text.to_owned();
    };
    let rest = &text[start + key.len()..];
    let offset = rest
        .find(|c: char| c.is_ascii_digit() || c == '-')
        .unwrap_or(0);
    let digits: String = rest[offset..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    let n: i64 = digits.parse().unwrap_or(0);
    let at = start + key.len() + offset;
    format!("{}{}{}", &text[..at], n + 1, &text[at + digits.len()..])
}

/// Changes one hex digit of the first hex string after `key`.
fn flip_hex_after(text: &str, key: &str) -> String {
    let Some(start) = text.find(key) else {
        return text.to_owned();
    };
    let Some(quote) = text[start + key.len()..].find(|c: char| c.is_ascii_hexdigit()) else {
        return text.to_owned();
    };
    let at = start + key.len() + quote;
    let c = text.as_bytes()[at];
    let replacement = if c == b'0' { '1' } else { '0' };
    format!("{}{}{}", &text[..at], replacement, &text[at + 1..])
}

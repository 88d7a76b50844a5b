//! Signed releases through the real `maillage` program: stored before shown, returned byte for
//! byte when asked again, budgets recorded, files verified, tampering caught.

use serde_json::{Value, json};

use crate::support::{init_structure, maillage, run, run_err, run_json, run_ok, write};

fn node_with_data(dir: &std::path::Path) -> String {
    let node = init_structure(dir);
    let csv = dir.join("gen.csv").display().to_string();
    run_ok(&[
        "generate", "--out", &csv, "--seed", "21", "--from", "2026-09", "--months", "2",
    ]);
    run_ok(&["import", "--dir", &node, &csv]);
    node
}

#[test]
fn a_release_is_stored_then_returned_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = node_with_data(tmp.path());
    let first = run_ok(&["release", "--dir", &node, "--period", "2026-09", "--json"]);
    let v: Value = serde_json::from_str(&first).expect("json");
    assert_eq!(v["period"], json!("2026-09"));
    assert_eq!(v["signer"].as_str().map(str::len), Some(64));
    assert_eq!(v["signature"].as_str().map(str::len), Some(128));
    let epsilon = v["epsilon"].as_f64().expect("epsilon");
    assert!(epsilon > 0.0 && epsilon <= 1.0, "{epsilon}");
    let cells = v["cells"].as_array().expect("cells");
    // The ten common-core indicators, histograms complete: 2+2+1+1+1+19+8+5+3+1 cells.
    assert_eq!(cells.len(), 43);
    for c in cells {
        assert!(c["scale"].as_f64().is_some_and(|s| s > 0.0), "{c}");
        assert!(
            c["ci95_half_width"].as_f64().is_some_and(|w| w > 0.0),
            "{c}"
        );
        assert!(c.get("category").is_some(), "{c}");
    }
    assert!(
        cells
            .iter()
            .any(|c| c["indicator"] == "beneficiaires" && c["category"].is_null())
    );

    // Asking again — with or without flags, after more imports — gives the same bytes.
    let csv = tmp.path().join("more.csv").display().to_string();
    run_ok(&[
        "generate", "--out", &csv, "--seed", "99", "--from", "2026-09", "--months", "1",
    ]);
    run_ok(&["import", "--dir", &node, &csv]);
    let again = run_ok(&[
        "release",
        "--dir",
        &node,
        "--period",
        "2026-09",
        "--json",
        "--force-open-period",
    ]);
    assert_eq!(again, first, "noise is never redrawn for a released period");

    let budget = run_json(&["budget", "--dir", &node, "--json"]);
    let periods = budget["periods"].as_array().cloned().unwrap_or_default();
    let sept = periods
        .iter()
        .find(|p| p["period"] == "2026-09")
        .expect("2026-09 in the ledger");
    assert_eq!(sept["released"], json!(true));
    assert_eq!(sept["spent"].as_f64(), Some(epsilon));
    let oct = periods
        .iter()
        .find(|p| p["period"] == "2026-10")
        .expect("2026-10 listed");
    assert_eq!(oct["spent"].as_f64(), Some(0.0));
    assert_eq!(oct["left"].as_f64(), Some(1.0));
}

#[test]
fn an_open_month_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    let err = run_err(&["release", "--dir", &node, "--period", "2999-12"]);
    assert!(
        err.contains("has not ended") && err.contains("--force-open-period"),
        "{err}"
    );
    let out = run(&[
        "release",
        "--dir",
        &node,
        "--period",
        "2999-12",
        "--force-open-period",
        "--json",
    ]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("attention"),
        "forcing warns"
    );
}

#[test]
fn verify_accepts_good_files_and_names_what_is_wrong_with_bad_ones() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = node_with_data(tmp.path());
    let file = tmp.path().join("release.json").display().to_string();
    run_ok(&[
        "release", "--dir", &node, "--period", "2026-09", "--out", &file,
    ]);
    let ok = run_json(&["verify", &file, "--json"]);
    assert_eq!(ok["ok"], json!(true));

    let text = std::fs::read_to_string(&file).expect("release file");
    let v: Value = serde_json::from_str(&text).expect("json");

    // A changed value: the signature no longer matches.
    let mut changed = v.clone();
    let old = changed["cells"][0]["value"].as_i64().unwrap_or(0);
    changed["cells"][0]["value"] = json!(old + 1);
    let bad = write(tmp.path(), "changed.json", &changed.to_string());
    let err = run_err(&["verify", &bad]);
    assert!(err.contains("signature"), "{err}");

    // A wrong signer key.
    let mut other = v.clone();
    other["signer"] = json!("11".repeat(32));
    let bad = write(tmp.path(), "signer.json", &other.to_string());
    assert!(!run(&["verify", &bad]).status.success());

    // Structure: a missing field, an unknown indicator, not JSON at all.
    let mut missing = v.clone();
    missing.as_object_mut().map(|o| o.remove("period"));
    let bad = write(tmp.path(), "missing.json", &missing.to_string());
    assert!(run_err(&["verify", &bad]).contains("period"));
    let mut unknown = v.clone();
    unknown["cells"][0]["indicator"] = json!("visiteurs");
    let bad = write(tmp.path(), "unknown.json", &unknown.to_string());
    assert!(run_err(&["verify", &bad]).contains("visiteurs"));
    let bad = write(tmp.path(), "garbage.json", "{not json");
    assert!(!run(&["verify", &bad]).status.success());
    let report = run_json_err(&["verify", &bad, "--json"]);
    assert_eq!(report["ok"], json!(false));
}

fn run_json_err(args: &[&str]) -> Value {
    let out = run(args);
    assert!(!out.status.success());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON ({e})"))
}

#[test]
fn a_killed_release_never_leads_to_a_second_noise_draw() {
    // Kill `release` repeatedly at different moments; whatever happened, every release that
    // was ever printed is the one the store returns, and the ledger has one entry.
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = node_with_data(tmp.path());
    let mut printed = Vec::new();
    for delay_ms in [0u64, 5, 15, 40, 100] {
        let child = maillage()
            .args(["release", "--dir", &node, "--period", "2026-09", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let pid = child.id();
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        let out = child.wait_with_output().expect("wait");
        if out.status.success() && !out.stdout.is_empty() {
            printed.push(String::from_utf8_lossy(&out.stdout).into_owned());
        }
    }
    let final_release = run_ok(&["release", "--dir", &node, "--period", "2026-09", "--json"]);
    for p in &printed {
        assert_eq!(p, &final_release);
    }
    let budget = run_json(&["budget", "--dir", &node, "--json"]);
    let released: Vec<_> = budget["periods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["released"] == json!(true))
        .collect();
    assert_eq!(released.len(), 1);
}

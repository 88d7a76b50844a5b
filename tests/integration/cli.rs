//! Process-level tests of the `maillage` command line.

use crate::support::{init_structure, maillage, run_err, run_json, run_ok};
use serde_json::json;

#[test]
fn init_creates_a_node_with_a_private_key_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("asso").display().to_string();
    let out = run_ok(&[
        "init",
        "--dir",
        &dir,
        "--role",
        "structure",
        "--name",
        "Les Clés du Numérique",
        "--code-insee",
        "2A004",
        "--pivot",
        "W751234567",
    ]);
    let status = run_json(&["status", "--dir", &dir, "--json"]);
    let identity = status["identity"].as_str().unwrap_or_default().to_owned();
    assert_eq!(identity.len(), 64);
    assert!(out.contains(&identity), "init prints the public identity");
    let key = std::fs::read_to_string(tmp.path().join("asso/node.key")).expect("key file");
    assert!(!out.contains(key.trim()), "the secret is never printed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("asso/node.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(status["role"], json!("structure"));
    assert_eq!(status["code_insee"], json!("2A004"));
    let config = std::fs::read_to_string(tmp.path().join("asso/maillage.toml")).expect("config");
    assert!(
        config.lines().any(|l| l.starts_with('#')),
        "the config is commented"
    );

    let again = run_err(&["init", "--dir", &dir, "--name", "Autre"]);
    assert!(again.contains("already holds a Maillage node"), "{again}");
    let still = run_json(&["status", "--dir", &dir, "--json"]);
    assert_eq!(
        still["identity"],
        json!(identity),
        "the key was not replaced"
    );
}

#[test]
fn init_validates_what_it_is_given() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("n").display().to_string();
    assert!(
        run_err(&[
            "init",
            "--dir",
            &dir,
            "--name",
            "x",
            "--code-insee",
            "99999"
        ])
        .contains("99999")
    );
    assert!(run_err(&["init", "--dir", &dir, "--name", "x", "--pivot", "123"]).contains("SIRET"));
    assert!(
        run_err(&["init", "--dir", &dir, "--name", "x", "--role", "boss"]).contains("structure")
    );
    assert!(
        !tmp.path().join("n").exists(),
        "a refused init leaves nothing behind"
    );
    std::fs::create_dir(tmp.path().join("full")).expect("dir");
    std::fs::write(tmp.path().join("full/notes.txt"), "mine").expect("file");
    let full = tmp.path().join("full").display().to_string();
    assert!(run_err(&["init", "--dir", &full, "--name", "x"]).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("full/notes.txt"))
            .ok()
            .as_deref(),
        Some("mine")
    );
    // An existing empty directory is fine.
    std::fs::create_dir(tmp.path().join("empty")).expect("dir");
    run_ok(&[
        "init",
        "--dir",
        &tmp.path().join("empty").display().to_string(),
        "--name",
        "x",
        "--role",
        "hub",
    ]);
}

#[test]
fn commands_on_a_missing_node_say_how_to_create_one() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("none").display().to_string();
    let err = run_err(&["status", "--dir", &dir]);
    assert!(err.contains("maillage init --dir"), "{err}");
    let err = run_err(&["indicators", "--dir", &dir, "--period", "2026-13"]);
    assert!(err.contains("2026-13") && err.contains("YYYY-MM"), "{err}");
}

#[test]
fn a_second_process_on_the_same_store_gets_a_clear_error() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    // Hold the store open in this process.
    let _held = maillage_node::Node::open(std::path::Path::new(&node)).expect("open");
    let err = run_err(&["status", "--dir", &node]);
    assert!(err.contains("in use by another maillage process"), "{err}");
}

#[test]
fn indicators_json_lists_every_category_with_zeros() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    let v = run_json(&[
        "indicators",
        "--dir",
        &node,
        "--period",
        "2026-10",
        "--json",
        "--modules",
    ]);
    let ind = &v["indicators"];
    assert_eq!(v["period"], json!("2026-10"));
    assert_eq!(ind["activites"], json!({"individuel": 0, "collectif": 0}));
    assert_eq!(ind["beneficiaires"], json!(0));
    assert_eq!(ind["thematiques"].as_object().map(|m| m.len()), Some(19));
    assert_eq!(ind["tranches_age"].as_object().map(|m| m.len()), Some(8));
    assert_eq!(ind["demarches"].as_object().map(|m| m.len()), Some(11));
    assert_eq!(ind["durees"].as_object().map(|m| m.len()), Some(4));
    let core = run_json(&[
        "indicators",
        "--dir",
        &node,
        "--period",
        "2026-10",
        "--json",
    ]);
    assert_eq!(core["indicators"].as_object().map(|m| m.len()), Some(10));
}

#[test]
fn demo_runs_the_federation_on_embedded_defaults() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("demo").display().to_string();
    let v = run_json(&[
        "demo",
        "--json",
        "--seed",
        "5",
        "--structures",
        "8",
        "--hubs",
        "2",
        "--out",
        &out,
    ]);
    assert_eq!(v["structures"], json!(8));
    assert_eq!(v["hubs"], json!(2));
    assert_eq!(v["coverage"]["structures_contributed"], json!(8), "{v}");
    assert_eq!(v["coverage"]["hubs_contributed"], json!(2), "{v}");
    assert_eq!(v["audit"]["ok"], json!(true), "{v}");
    // Every release follows the policy the committee adopted (2 of 3 signatures): its hash.
    let policy = v["policy"].as_str().unwrap_or_default();
    assert!(
        policy.len() == 64 && policy.bytes().all(|b| b.is_ascii_hexdigit()),
        "{v}"
    );
    // Eight releases and two hub aggregates, every signature checked.
    assert_eq!(v["audit"]["releases_verified"], json!(10), "{v}");
    // Régional totals came back over the network through the national node, one région per
    // hub, both categories of activities.
    let regions = v["by_region"].as_array().cloned().unwrap_or_default();
    assert_eq!(regions.len(), 4, "{v}");
    assert!(regions.iter().all(|r| r["coverage"] == json!("4/4")), "{v}");
    let m = &v["metrics"];
    assert!(
        m["bytes_sent_per_structure_max"].as_u64().unwrap_or(0) > 1000,
        "{m}"
    );
    assert!(
        m["bytes_sent_per_structure_max"]
            .as_u64()
            .unwrap_or(u64::MAX)
            < 32 * 1024,
        "{m}"
    );
    assert!(m["release_to_national_total_ms"].as_u64().is_some(), "{m}");
    let totals = v["totals"].as_array().cloned().unwrap_or_default();
    assert_eq!(totals.len(), 43, "every common-core cell");
    let people = totals
        .iter()
        .find(|t| t["indicator"] == "beneficiaires")
        .cloned()
        .unwrap_or_default();
    let truth = people["truth"].as_f64().unwrap_or(0.0);
    let (lo, hi) = (
        people["ci95"][0].as_f64().unwrap_or(0.0),
        people["ci95"][1].as_f64().unwrap_or(0.0),
    );
    assert!(truth > 50.0, "{people}");
    // A 95% interval misses the truth 5% of the time: a 20-fold widening makes this test fail
    // by chance with probability far below 1e-6 while still catching a broken interval.
    let (mid, half) = ((lo + hi) / 2.0, (hi - lo) / 2.0);
    assert!((truth - mid).abs() <= 20.0 * half, "{people}");
    // The national bundle carries the committee's adoption chain: pinned to the adopted
    // genesis the audit passes, pinned elsewhere it fails, and so does an altered signature.
    let bundle = std::path::Path::new(&out).join("bundle");
    let bundle_arg = bundle.display().to_string();
    // A failing audit exits non-zero and still prints its JSON report.
    let run_json_status = |args: &[&str]| -> serde_json::Value {
        let output = crate::support::run(args);
        assert!(!output.status.success(), "{args:?} should fail");
        serde_json::from_slice(&output.stdout).expect("audit JSON")
    };
    run_ok(&["audit", &bundle_arg, "--genesis", policy]);
    let elsewhere = "ab".repeat(32);
    let pinned = run_json_status(&["audit", &bundle_arg, "--genesis", &elsewhere, "--json"]);
    assert_eq!(pinned["ok"], json!(false), "{pinned}");
    assert_eq!(
        pinned["findings"][0]["kind"], "bad_policy_adoption",
        "{pinned}"
    );
    let chain_file = bundle.join("policy-adoptions.json");
    let mut chain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&chain_file).expect("chain"))
            .expect("chain JSON");
    let signature = chain[0]["record"]["signatures"][0]["signature"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(signature.len(), 128, "{chain}");
    let flipped = if signature.starts_with('0') { "1" } else { "0" };
    chain[0]["record"]["signatures"][0]["signature"] =
        json!(format!("{flipped}{}", &signature[1..]));
    std::fs::write(&chain_file, chain.to_string()).expect("write chain");
    let altered = run_json_status(&["audit", &bundle_arg, "--json"]);
    assert_eq!(altered["ok"], json!(false), "{altered}");
    assert!(
        altered["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["kind"] == "bad_policy_adoption"
                && f["location"] == "policy-adoptions.json[0]")),
        "{altered}"
    );

    let text = run_ok(&["demo", "--structures", "3", "--hubs", "1"]);
    assert!(
        text.contains("Bénéficiaires") && text.contains("conforme"),
        "{text}"
    );
}

#[test]
fn help_is_in_french() {
    let out = maillage().arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Importe un fichier d'activités"), "{help}");
}

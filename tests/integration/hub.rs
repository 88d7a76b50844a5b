//! A hub through the real `maillage` program: members' releases accepted into the log with
//! receipts, resends acknowledged once stored once, non-members and equivocations refused,
//! aggregates signed, bundles exported and audited, tampering caught.

use std::path::Path;

use maillage_node::Identity;
use maillage_protocol::{SignedAggregate, SignedRelease};
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
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
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

/// A national federation through the real program: hub A (structures 0 and 1), hub B
/// (structure 2), hub C (a member that never contributes), each structure releasing 2026-09.
/// A and B aggregate and export their bundles; the national node accepts the bundles.
struct Federation {
    w: World,
    national: String,
    hubs: Vec<String>,
    bundles: Vec<String>,
}

fn hub_node(root: &Path, name: &str) -> String {
    let dir = root.join(name).display().to_string();
    run_ok(&[
        "init",
        "--dir",
        &dir,
        "--role",
        "hub",
        "--name",
        name,
        "--code-insee",
        "69123",
    ]);
    dir
}

fn federation() -> Federation {
    let w = world(0);
    let root = w.root.clone();
    let hubs = vec![
        hub_node(&root, "hub-a"),
        hub_node(&root, "hub-b"),
        hub_node(&root, "hub-c"),
    ];
    let national = root.join("national").display().to_string();
    run_ok(&[
        "init",
        "--dir",
        &national,
        "--role",
        "national",
        "--name",
        "National",
        "--code-insee",
        "75056",
    ]);
    for hub in &hubs {
        run_ok(&["members", "add", "--dir", &national, "--from-node", hub]);
    }
    let mut bundles = Vec::new();
    for (h, members) in [(0usize, &[0usize, 1][..]), (1, &[2][..])] {
        let hub = &hubs[h];
        let mut args = vec!["accept", "--dir", hub.as_str()];
        for &s in members {
            run_ok(&[
                "members",
                "add",
                "--dir",
                hub,
                "--from-node",
                &w.structures[s],
            ]);
            args.push(&w.releases[s]);
        }
        run_ok(&args);
        run_ok(&["aggregate", "--dir", hub, "--period", "2026-09"]);
        let bundle = root.join(format!("bundle-{h}")).display().to_string();
        run_ok(&[
            "log", "export", "--dir", hub, "--period", "2026-09", "--out", &bundle,
        ]);
        bundles.push(bundle);
    }
    Federation {
        w,
        national,
        hubs,
        bundles,
    }
}

fn cells_by_name(aggregate: &Value) -> std::collections::BTreeMap<String, (i64, f64)> {
    aggregate["cells"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                format!("{}/{}", c["indicator"], c["category"]),
                (
                    c["sum"].as_i64().unwrap_or(i64::MIN),
                    c["variance"].as_f64().unwrap_or(f64::NAN),
                ),
            )
        })
        .collect()
}

fn national_bundle(f: &Federation) -> String {
    let mut args = vec!["accept", "--dir", f.national.as_str(), "--json"];
    args.extend(f.bundles.iter().map(String::as_str));
    let accepted = run_json(&args);
    assert_eq!(accepted["log_size"], json!(2), "{accepted}");
    run_ok(&["aggregate", "--dir", &f.national, "--period", "2026-09"]);
    let bundle = f.w.root.join("national-bundle").display().to_string();
    run_ok(&[
        "log",
        "export",
        "--dir",
        &f.national,
        "--period",
        "2026-09",
        "--out",
        &bundle,
    ]);
    bundle
}

#[test]
fn national_total_is_the_sum_of_hub_aggregates_and_of_releases() {
    let f = federation();
    let bundle = national_bundle(&f);
    let national: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&bundle).join("aggregate.json")).expect("aggregate"),
    )
    .expect("json");
    assert_eq!(national["level"], json!("national"));
    let hub_keys: Vec<String> = f
        .hubs
        .iter()
        .map(|h| {
            Identity::read(&Path::new(h).join("node.key"))
                .expect("key")
                .public_hex()
        })
        .collect();
    let mut contributed = vec![hub_keys[0].clone(), hub_keys[1].clone()];
    contributed.sort();
    assert_eq!(national["coverage"]["contributed"], json!(contributed));
    assert_eq!(
        national["coverage"]["missing"],
        json!([hub_keys[2].clone()])
    );

    let hub_aggregates: Vec<Value> = f
        .bundles
        .iter()
        .map(|b| {
            serde_json::from_str(
                &std::fs::read_to_string(Path::new(b).join("aggregate.json")).expect("aggregate"),
            )
            .expect("json")
        })
        .collect();
    let releases: Vec<Value> = f
        .w
        .releases
        .iter()
        .map(|r| serde_json::from_str(&std::fs::read_to_string(r).expect("release")).expect("json"))
        .collect();
    let total = cells_by_name(&national);
    let (a, b) = (
        cells_by_name(&hub_aggregates[0]),
        cells_by_name(&hub_aggregates[1]),
    );
    assert!(!total.is_empty());
    for (name, (sum, variance)) in &total {
        let (sa, va) = a.get(name).copied().unwrap_or((0, 0.0));
        let (sb, vb) = b.get(name).copied().unwrap_or((0, 0.0));
        assert_eq!(*sum, sa + sb, "{name}");
        assert!(
            (variance - (va + vb)).abs() <= 1e-9 * variance.abs().max(1.0),
            "{name}"
        );
        // And the sum of every structure's noisy value.
        let from_releases: i64 = releases
            .iter()
            .flat_map(|r| r["cells"].as_array().cloned().unwrap_or_default())
            .filter(|c| format!("{}/{}", c["indicator"], c["category"]) == *name)
            .map(|c| c["value"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(*sum, from_releases, "{name}");
    }

    let report = audit_json(&bundle);
    assert_eq!(report["ok"], json!(true), "{report}");
    // 2 hub aggregates in the national log, 3 releases in the hub bundles.
    assert_eq!(report["releases_verified"], json!(5), "{report}");
    assert_eq!(report["national"], json!(true));
}

#[test]
fn non_member_hub_is_refused_by_the_national_node() {
    let f = federation();
    let outsider = hub_node(&f.w.root, "hub-d");
    run_ok(&[
        "members",
        "add",
        "--dir",
        &outsider,
        "--from-node",
        &f.w.structures[0],
    ]);
    run_ok(&["accept", "--dir", &outsider, &f.w.releases[0]]);
    let aggregate = f.w.root.join("outsider.json");
    let text = run_ok(&[
        "aggregate",
        "--dir",
        &outsider,
        "--period",
        "2026-09",
        "--json",
    ]);
    std::fs::write(&aggregate, text).expect("write");
    let err = run_err(&[
        "accept",
        "--dir",
        &f.national,
        &aggregate.display().to_string(),
    ]);
    assert!(err.contains("not a member"), "{err}");
    // A hub does not take aggregates, and the national node does not take releases.
    let err = run_err(&["accept", "--dir", &f.national, &f.w.releases[0]]);
    assert!(err.contains("refus"), "{err}");
}

#[test]
fn equivocating_hub_is_caught_by_the_national_node_and_its_auditor() {
    let f = federation();
    let bundle = national_bundle(&f);
    assert_eq!(audit_json(&bundle)["ok"], json!(true));
    // Hub B takes one more structure and signs a second, different aggregate for 2026-09.
    run_ok(&[
        "members",
        "add",
        "--dir",
        &f.hubs[1],
        "--from-node",
        &f.w.structures[1],
    ]);
    run_ok(&["accept", "--dir", &f.hubs[1], &f.w.releases[1]]);
    let second = f.w.root.join("second-aggregate.json");
    let text = run_ok(&[
        "aggregate",
        "--dir",
        &f.hubs[1],
        "--period",
        "2026-09",
        "--json",
    ]);
    // Signed as a revision of the first; the hub forks its chain instead: the same figures
    // signed again as a second *first* aggregate (naming nothing).
    let revision = SignedAggregate::from_json(&text).expect("revision");
    assert!(revision.aggregate().supersedes.is_some());
    let (mut forked, _) = revision.into_parts();
    forked.supersedes = None;
    let hub_b = Identity::read(&Path::new(&f.hubs[1]).join("node.key")).expect("key");
    let forked = forked.sign(hub_b.signing_key()).expect("sign");
    std::fs::write(&second, forked.to_json_pretty()).expect("write");
    let err = run_err(&[
        "accept",
        "--dir",
        &f.national,
        &second.display().to_string(),
    ]);
    assert!(err.contains("equivocation"), "{err}");
    // The same first aggregate again: acknowledged, stored once.
    let again = run_json(&["accept", "--dir", &f.national, "--json", &f.bundles[1]]);
    assert_eq!(again["log_size"], json!(2));
    assert_eq!(again["results"][0]["new"], json!(false));

    let out = f.w.root.join("national-bundle-2").display().to_string();
    run_ok(&[
        "log",
        "export",
        "--dir",
        &f.national,
        "--period",
        "2026-09",
        "--out",
        &out,
    ]);
    let report = audit_json(&out);
    assert_eq!(report["ok"], json!(false));
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    assert!(
        findings.iter().any(|f| f["kind"] == json!("equivocation")
            && f["location"] == json!("equivocations.json[0]")),
        "{report}"
    );
}

#[test]
fn tampering_anywhere_in_the_national_chain_fails_the_audit_precisely() {
    let f = federation();
    let bundle = national_bundle(&f);
    assert_eq!(audit_json(&bundle)["ok"], json!(true));
    let hubs_dir = Path::new(&bundle).join("hubs");
    let hub_dirs: Vec<std::path::PathBuf> = std::fs::read_dir(&hubs_dir)
        .expect("hubs")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(hub_dirs.len(), 2);
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };

    let check = |edit: &dyn Fn(&Path), kind: &str, location: &str| {
        let copy = f.w.root.join(format!("tampered-{}", kind));
        let _ = std::fs::remove_dir_all(&copy);
        copy_dir(Path::new(&bundle), &copy);
        edit(&copy);
        let report = audit_json(&copy.display().to_string());
        assert_eq!(report["ok"], json!(false), "{kind}: {report}");
        let findings = report["findings"].as_array().cloned().unwrap_or_default();
        assert!(
            findings.iter().any(|x| x["kind"] == json!(kind)
                && x["location"]
                    .as_str()
                    .is_some_and(|l| l.starts_with(location))),
            "expected {kind} at {location}: {report}"
        );
    };
    // A release value inside a hub bundle.
    let first = name(&hub_dirs[0]);
    check(
        &|dir| {
            let path = dir.join("hubs").join(&first).join("releases.jsonl");
            let text = std::fs::read_to_string(&path).expect("releases");
            std::fs::write(&path, replace_first_number_after(&text, "\"value\"")).expect("write");
        },
        "bad_signature",
        &format!("hubs/{first}/releases.jsonl:1"),
    );
    // A national cell.
    check(
        &|dir| {
            let path = dir.join("aggregate.json");
            let text = std::fs::read_to_string(&path).expect("aggregate");
            std::fs::write(&path, replace_first_number_after(&text, "\"sum\"")).expect("write");
        },
        "bad_signature",
        "aggregate.json signature",
    );
    // A hub aggregate in the national log.
    check(
        &|dir| {
            let path = dir.join("contributions.jsonl");
            let text = std::fs::read_to_string(&path).expect("contributions");
            std::fs::write(&path, replace_first_number_after(&text, "\"sum\"")).expect("write");
        },
        "bad_signature",
        "contributions.jsonl:1 aggregate.signature",
    );
    // A hub bundle removed: the chain is broken.
    let second = name(&hub_dirs[1]);
    check(
        &|dir| {
            let _ = std::fs::remove_dir_all(dir.join("hubs").join(&second));
        },
        "missing_hub_bundle",
        &format!("hubs/{second}"),
    );
    // A national receipt's proof.
    check(
        &|dir| {
            let path = dir.join("receipts.jsonl");
            let text = std::fs::read_to_string(&path).expect("receipts");
            std::fs::write(&path, flip_hex_after(&text, "\"proof\"")).expect("write");
        },
        "bad_inclusion_proof",
        "receipts.jsonl:1 proof",
    );
}

/// A hub that takes a late release after its first aggregate reached the national node: the
/// national node logs the hub's revision, sums it instead of the first one, and the audit of
/// the national bundle passes. Returns the federation, the national bundle, the revision.
fn revised_federation() -> (Federation, String, Value) {
    let f = federation();
    national_bundle(&f);
    // Structure 3 joins hub B and releases after the deadline.
    let (late_dir, late_release) = structure(&f.w.root, 3, "13055");
    run_ok(&[
        "members",
        "add",
        "--dir",
        &f.hubs[1],
        "--from-node",
        &late_dir,
    ]);
    run_ok(&["accept", "--dir", &f.hubs[1], &late_release]);
    run_ok(&["aggregate", "--dir", &f.hubs[1], "--period", "2026-09"]);
    let revised_bundle = f.w.root.join("bundle-1-revised").display().to_string();
    run_ok(&[
        "log",
        "export",
        "--dir",
        &f.hubs[1],
        "--period",
        "2026-09",
        "--out",
        &revised_bundle,
    ]);
    let accepted = run_json(&["accept", "--dir", &f.national, "--json", &revised_bundle]);
    assert_eq!(accepted["log_size"], json!(3), "{accepted}");
    assert_eq!(accepted["results"][0]["new"], json!(true), "{accepted}");
    // The first aggregate again, after its revision: acknowledged, not an equivocation.
    let again = run_json(&["accept", "--dir", &f.national, "--json", &f.bundles[1]]);
    assert_eq!(again["results"][0]["new"], json!(false), "{again}");
    assert_eq!(again["log_size"], json!(3), "{again}");

    run_ok(&["aggregate", "--dir", &f.national, "--period", "2026-09"]);
    let bundle =
        f.w.root
            .join("national-bundle-revised")
            .display()
            .to_string();
    run_ok(&[
        "log",
        "export",
        "--dir",
        &f.national,
        "--period",
        "2026-09",
        "--out",
        &bundle,
    ]);
    let revision: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&revised_bundle).join("aggregate.json"))
            .expect("aggregate"),
    )
    .expect("json");
    let mut releases = f.w.releases.clone();
    releases.push(late_release);
    let mut f = f;
    f.w.releases = releases;
    (f, bundle, revision)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

#[test]
fn a_hub_revision_after_a_late_release_is_summed_by_the_national_node_and_audited() {
    let (f, bundle, revision) = revised_federation();
    let first_b = read_json(&Path::new(&f.bundles[1]).join("aggregate.json"));
    let first_b_id = SignedAggregate::from_json(&first_b.to_string())
        .expect("aggregate")
        .id()
        .to_string();
    let revision_id = SignedAggregate::from_json(&revision.to_string())
        .expect("revision")
        .id()
        .to_string();
    // The revision names the first aggregate, with a consistency proof (2 → 3 leaves).
    assert_eq!(revision["version"], json!(2));
    assert_eq!(revision["supersedes"]["id"], json!(first_b_id));
    assert!(
        revision["supersedes"]["consistency"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    assert_eq!(revision["structures"], json!(2));

    let national = read_json(&Path::new(&bundle).join("aggregate.json"));
    // Hub A's aggregate (leaf 0) and hub B's revision (leaf 2); hub B's first (leaf 1) is kept
    // in the log but not summed.
    let ids: Vec<Value> = national["contributions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| json!([c["index"], c["id"]]))
        .collect();
    let first_a = read_json(&Path::new(&f.bundles[0]).join("aggregate.json"));
    let first_a_id = SignedAggregate::from_json(&first_a.to_string())
        .expect("aggregate")
        .id()
        .to_string();
    assert_eq!(ids, vec![json!([0, first_a_id]), json!([2, revision_id])]);
    assert_eq!(national["structures"], json!(4));
    let contributions = std::fs::read_to_string(Path::new(&bundle).join("contributions.jsonl"))
        .expect("contributions");
    assert_eq!(contributions.lines().count(), 3);

    // National total = hub A + hub B's latest revision = the sum of all four releases.
    let total = cells_by_name(&national);
    let (a, b) = (cells_by_name(&first_a), cells_by_name(&revision));
    let releases: Vec<Value> =
        f.w.releases
            .iter()
            .map(|r| read_json(Path::new(r)))
            .collect();
    assert_eq!(releases.len(), 4);
    assert!(!total.is_empty());
    for (name, (sum, variance)) in &total {
        let (sa, va) = a.get(name).copied().unwrap_or((0, 0.0));
        let (sb, vb) = b.get(name).copied().unwrap_or((0, 0.0));
        assert_eq!(*sum, sa + sb, "{name}");
        assert!(
            (variance - (va + vb)).abs() <= 1e-9 * variance.abs().max(1.0),
            "{name}"
        );
        let from_releases: i64 = releases
            .iter()
            .flat_map(|r| r["cells"].as_array().cloned().unwrap_or_default())
            .filter(|c| format!("{}/{}", c["indicator"], c["category"]) == *name)
            .map(|c| c["value"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(*sum, from_releases, "{name}");
    }

    let report = audit_json(&bundle);
    assert_eq!(report["ok"], json!(true), "{report}");
    // 3 hub aggregates in the national log, 2 + 2 releases in the summed hub bundles.
    assert_eq!(report["releases_verified"], json!(7), "{report}");
}

#[test]
fn tampered_revision_links_and_stale_national_sums_fail_the_audit_precisely() {
    let (f, bundle, _) = revised_federation();
    assert_eq!(audit_json(&bundle)["ok"], json!(true));
    let hub_b = Identity::read(&Path::new(&f.hubs[1]).join("node.key")).expect("key");
    let national_key = Identity::read(&Path::new(&f.national).join("node.key")).expect("key");
    let check = |name: &str, edit: &dyn Fn(&Path), kind: &str, location: &str| {
        let copy = f.w.root.join(format!("tampered-{name}"));
        let _ = std::fs::remove_dir_all(&copy);
        copy_dir(Path::new(&bundle), &copy);
        edit(&copy);
        let report = audit_json(&copy.display().to_string());
        assert_eq!(report["ok"], json!(false), "{name}: {report}");
        let findings = report["findings"].as_array().cloned().unwrap_or_default();
        assert!(
            findings.iter().any(|x| x["kind"] == json!(kind)
                && x["location"]
                    .as_str()
                    .is_some_and(|l| l.starts_with(location))),
            "{name}: expected {kind} at {location}: {report}"
        );
    };
    // Rewrites the revision (leaf 2 of the national log), re-signed by hub B.
    let resign_revision = |dir: &Path, edit: &dyn Fn(&mut maillage_protocol::Aggregate)| {
        let path = dir.join("contributions.jsonl");
        let text = std::fs::read_to_string(&path).expect("contributions");
        let mut lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("line"))
            .collect();
        let signed =
            SignedAggregate::from_json(&lines[2]["aggregate"].to_string()).expect("revision");
        let (mut a, _) = signed.into_parts();
        edit(&mut a);
        let signed = a.sign(hub_b.signing_key()).expect("sign");
        lines[2]["aggregate"] = serde_json::to_value(&signed).expect("json");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).expect("write");
    };
    // The link names an aggregate that is not in the log.
    check(
        "revision-link",
        &|dir| {
            resign_revision(dir, &|a| {
                if let Some(s) = a.supersedes.as_mut() {
                    s.id = maillage_protocol::AggregateId::from_bytes([7; 32]);
                }
            })
        },
        "bad_revision",
        "contributions.jsonl:3 aggregate.supersedes.id",
    );
    // The consistency proof does not verify: the hub's log does not extend its first one.
    check(
        "consistency-proof",
        &|dir| {
            resign_revision(dir, &|a| {
                if let Some(h) = a
                    .supersedes
                    .as_mut()
                    .and_then(|s| s.consistency.first_mut())
                {
                    h[0] ^= 1;
                }
            })
        },
        "equivocation",
        "contributions.jsonl:3 aggregate.supersedes",
    );
    // A revision that names nothing: a second first aggregate of hub B.
    check(
        "unlinked-revision",
        &|dir| resign_revision(dir, &|a| a.supersedes = None),
        "equivocation",
        "contributions.jsonl:3",
    );
    // A national node that sums hub B's superseded first aggregate (re-signed by it).
    check(
        "stale-national-sum",
        &|dir| {
            let path = dir.join("aggregate.json");
            let signed =
                SignedAggregate::from_json(&std::fs::read_to_string(&path).expect("aggregate"))
                    .expect("national");
            let (mut a, _) = signed.into_parts();
            let first_b = SignedAggregate::from_json(
                &std::fs::read_to_string(Path::new(&f.bundles[1]).join("aggregate.json"))
                    .expect("aggregate"),
            )
            .expect("first");
            if let Some(c) = a.contributions.get_mut(1) {
                c.index = 1;
                c.id = first_b.id().as_contribution_id();
            }
            let signed = a.sign(national_key.signing_key()).expect("sign");
            std::fs::write(&path, signed.to_json_pretty()).expect("write");
        },
        "extra_contribution",
        "aggregate.json contributions[1]",
    );
    // The national count of structures.
    check(
        "structures",
        &|dir| {
            let path = dir.join("aggregate.json");
            let signed =
                SignedAggregate::from_json(&std::fs::read_to_string(&path).expect("aggregate"))
                    .expect("national");
            let (mut a, _) = signed.into_parts();
            a.structures = a.structures.map(|n| n + 1);
            let signed = a.sign(national_key.signing_key()).expect("sign");
            std::fs::write(&path, signed.to_json_pretty()).expect("write");
        },
        "sum_mismatch",
        "aggregate.json structures",
    );
}

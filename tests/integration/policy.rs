//! Governance across processes: three committee nodes (quorum 2) propose, sign and adopt a
//! policy through `maillage policy …`; forged and replayed signatures are refused; a node that
//! was not there for the adoption catches up from an export; a hub accepts releases naming its
//! adopted policy and refuses the others.

use std::path::Path;

use crate::support::{run_err, run_json, run_ok, write};

fn init(dir: &Path, name: &str, role: &str) -> (String, String) {
    let node = dir.join(name);
    let node_s = node.display().to_string();
    run_ok(&[
        "init",
        "--dir",
        &node_s,
        "--role",
        role,
        "--name",
        name,
        "--code-insee",
        "69385",
    ]);
    let status = run_json(&["status", "--dir", &node_s, "--json"]);
    let key = status["identity"].as_str().unwrap_or_default().to_owned();
    assert_eq!(key.len(), 64, "{status}");
    (node_s, key)
}

fn show(node: &str) -> serde_json::Value {
    run_json(&["policy", "show", "--dir", node, "--json"])
}

#[test]
fn three_committee_nodes_adopt_with_quorum_two_and_refuse_forgeries() {
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => panic!("tempdir: {e}"),
    };
    let dir = tmp.path();
    let (a, ka) = init(dir, "a", "national");
    let (b, kb) = init(dir, "b", "hub");
    let (c, kc) = init(dir, "c", "hub");

    // The genesis proposal: the committee, its quorum, and the registry.
    let genesis = write(
        dir,
        "genesis.toml",
        &format!(
            "[[edits]]\nop = \"add_committee_member\"\nkey = \"{ka}\"\nname = \"ANCT\"\n\
             [[edits]]\nop = \"add_committee_member\"\nkey = \"{kb}\"\nname = \"Hub B\"\n\
             [[edits]]\nop = \"add_committee_member\"\nkey = \"{kc}\"\nname = \"Hub C\"\n\
             [[edits]]\nop = \"set_quorum\"\nquorum = 2\n\
             [[edits]]\nop = \"add_member\"\nkey = \"{ka}\"\nname = \"National\"\nrole = \"national\"\n\
             [[edits]]\nop = \"add_member\"\nkey = \"{kb}\"\nname = \"Hub B\"\nrole = \"hub\"\ncommune = \"69123\"\n\
             [[edits]]\nop = \"add_member\"\nkey = \"{kc}\"\nname = \"Hub C\"\nrole = \"hub\"\n"
        ),
    );
    let proposed = run_json(&["policy", "propose", "--dir", &a, &genesis, "--json"]);
    assert_eq!(proposed["valid"], true, "{proposed}");
    let hash = proposed["hash"].as_str().unwrap_or_default().to_owned();

    // B and C receive the proposal offline.
    let share = dir.join("share").display().to_string();
    run_ok(&["policy", "export", "--dir", &a, "--out", &share]);
    run_ok(&["policy", "import", "--dir", &b, &share]);
    run_ok(&["policy", "import", "--dir", &c, &share]);
    assert_eq!(show(&b)["proposal"]["hash"], hash.as_str());

    let sig_a = dir.join("sig-a.json").display().to_string();
    let sig_b = dir.join("sig-b.json").display().to_string();
    let sig_c = dir.join("sig-c.json").display().to_string();
    run_ok(&["policy", "sign", "--dir", &a, "--out", &sig_a]);
    run_ok(&["policy", "sign", "--dir", &b, "--out", &sig_b]);
    run_ok(&["policy", "sign", "--dir", &c, "--out", &sig_c]);

    // A forged signature (one hex digit changed) is refused, and nothing is recorded.
    let text = std::fs::read_to_string(&sig_c).unwrap_or_default();
    let sig_value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let signature = sig_value["signature"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let flipped = format!(
        "{}{}",
        if signature.starts_with('0') { "1" } else { "0" },
        &signature[1..]
    );
    let forged = write(dir, "forged.json", &text.replace(&signature, &flipped));
    let err = run_err(&["policy", "adopt", "--dir", &a, &forged]);
    assert!(err.contains("does not verify"), "{err}");

    // One signature: not adopted, here or anywhere.
    let one = run_json(&["policy", "adopt", "--dir", &a, &sig_a, "--json"]);
    assert_eq!(one["adopted"], false, "{one}");
    assert_eq!(one["signatures"], 1);
    assert!(show(&a)["adopted"].is_null());
    assert_eq!(show(&a)["proposal"]["signatures"], 1);

    // A second committee signature reaches the quorum (A's own is remembered).
    let two = run_json(&["policy", "adopt", "--dir", &a, &sig_b, "--json"]);
    assert_eq!(two["adopted"], true, "{two}");
    let shown = show(&a);
    assert_eq!(shown["adopted"]["hash"], hash.as_str());
    assert_eq!(shown["adopted"]["sequence"], 1);
    assert!(shown["proposal"].is_null());
    let members = run_json(&["policy", "members", "--dir", &a, "--json"]);
    assert_eq!(members.as_array().map(Vec::len), Some(3));

    // C was not part of the adoption: it catches up from an export, verifying the signatures.
    assert!(show(&c)["adopted"].is_null());
    run_ok(&["policy", "export", "--dir", &a, "--out", &share]);
    run_ok(&["policy", "import", "--dir", &c, &share]);
    assert_eq!(show(&c)["adopted"]["hash"], hash.as_str());

    // A change: ε 1 → 0.5. The genesis signatures cannot be replayed for it.
    let change = write(
        dir,
        "change.json",
        r#"{"edits": [{"op": "set_budget", "budget": 0.5}]}"#,
    );
    run_ok(&["policy", "propose", "--dir", &a, &change]);
    let pending = show(&a);
    let changes = pending["proposal"]["changes"].to_string();
    assert!(changes.contains("ε = 1 → ε = 0.5"), "{pending}");
    let err = run_err(&["policy", "adopt", "--dir", &a, &sig_c]);
    assert!(err.contains("is for adoption n°1"), "{err}");
    assert!(err.contains("not for adoption n°2"), "{err}");

    // A non-member of the committee cannot sign.
    let (d, _) = init(dir, "d", "structure");
    run_ok(&["policy", "export", "--dir", &a, "--out", &share]);
    run_ok(&["policy", "import", "--dir", &d, &share]);
    let err = run_err(&["policy", "sign", "--dir", &d]);
    assert!(err.contains("not on the steering committee"), "{err}");

    // The new version is adopted by B and C.
    run_ok(&["policy", "import", "--dir", &b, &share]);
    run_ok(&["policy", "import", "--dir", &c, &share]);
    let sig_b2 = dir.join("sig-b2.json").display().to_string();
    let sig_c2 = dir.join("sig-c2.json").display().to_string();
    run_ok(&["policy", "sign", "--dir", &b, "--out", &sig_b2]);
    run_ok(&["policy", "sign", "--dir", &c, "--out", &sig_c2]);
    let adopted = run_json(&["policy", "adopt", "--dir", &a, &sig_b2, &sig_c2, "--json"]);
    assert_eq!(adopted["adopted"], true, "{adopted}");
    assert_eq!(adopted["sequence"], 2);
    assert_eq!(show(&a)["adopted"]["policy"]["budget"], 0.5);
}

#[test]
fn a_structure_joins_through_its_hub() {
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => panic!("tempdir: {e}"),
    };
    let dir = tmp.path();
    let (hub, khub) = init(dir, "hub", "hub");
    let genesis = write(
        dir,
        "genesis.json",
        &format!(
            r#"{{"edits": [
                {{"op": "add_committee_member", "key": "{khub}", "name": "Hub"}},
                {{"op": "set_quorum", "quorum": 1}},
                {{"op": "add_member", "key": "{khub}", "name": "Hub", "role": "hub"}}]}}"#
        ),
    );
    run_ok(&["policy", "propose", "--dir", &hub, &genesis]);
    let places = write(
        dir,
        "lieux.csv",
        "id,pivot,nom,code_insee,services\n\
         lieu-9,73282932000074,Espace numérique de Vaise,69389,Aide aux démarches administratives\n",
    );
    let (s, ks) = init(dir, "s", "structure");
    let request = dir.join("join.json").display().to_string();
    run_ok(&[
        "policy",
        "join-request",
        "--dir",
        &s,
        "--places",
        &places,
        "--place-id",
        "lieu-9",
        "--hub",
        &khub,
        "--out",
        &request,
    ]);
    let proposed = run_json(&[
        "policy", "propose", "--dir", &hub, "--join", &request, "--json",
    ]);
    assert_eq!(proposed["valid"], true, "{proposed}");
    let members = run_json(&["policy", "members", "--dir", &hub, "--proposed", "--json"]);
    let joined = members
        .as_array()
        .and_then(|m| m.iter().find(|m| m["key"] == ks.as_str()).cloned())
        .unwrap_or_default();
    assert_eq!(joined["name"], "Espace numérique de Vaise", "{members}");
    assert_eq!(joined["commune"], "69389");
    assert_eq!(joined["place_id"], "lieu-9");
    assert_eq!(joined["hub"], khub.as_str());

    // An altered request is refused.
    let text = std::fs::read_to_string(&request).unwrap_or_default();
    let altered = write(dir, "altered.json", &text.replace("Vaise", "Vaize"));
    let err = run_err(&["policy", "propose", "--dir", &hub, "--join", &altered]);
    assert!(err.contains("not signed by that key"), "{err}");
}

/// A structure with activities for September 2026, and its release file of that month.
fn structure_with_release(dir: &Path, name: &str, seed: &str) -> (String, String) {
    let (node, key) = init(dir, name, "structure");
    let csv = dir.join(format!("{name}.csv")).display().to_string();
    run_ok(&[
        "generate",
        "--out",
        &csv,
        "--seed",
        seed,
        "--from",
        "2026-09",
        "--months",
        "1",
        "--commune",
        "69385",
    ]);
    run_ok(&["import", "--dir", &node, &csv]);
    let _ = key;
    let release = dir
        .join(format!("{name}-2026-09.json"))
        .display()
        .to_string();
    (node, release)
}

fn release(node: &str, out: &str) -> serde_json::Value {
    run_ok(&[
        "release", "--dir", node, "--period", "2026-09", "--out", out,
    ]);
    let text = std::fs::read_to_string(out).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_default()
}

#[test]
fn hubs_accept_releases_under_the_adopted_policy_only() {
    let tmp = match tempfile::tempdir() {
        Ok(t) => t,
        Err(e) => panic!("tempdir: {e}"),
    };
    let dir = tmp.path();
    let (hub, khub) = init(dir, "hub", "hub");
    let (s1, r1) = structure_with_release(dir, "s1", "11");
    let (s2, r2) = structure_with_release(dir, "s2", "12");
    let (s3, r3) = structure_with_release(dir, "s3", "13");
    let key_of = |node: &str| {
        run_json(&["status", "--dir", node, "--json"])["identity"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (ks1, ks2, ks3) = (key_of(&s1), key_of(&s2), key_of(&s3));
    // The committee (the hub's key, quorum 1) adopts ε = 0.5, not the local default of 1; the
    // registry lists the three structures under the hub (which admits them from it).
    let genesis = write(
        dir,
        "genesis.json",
        &format!(
            r#"{{"edits": [
                {{"op": "add_committee_member", "key": "{khub}", "name": "Hub"}},
                {{"op": "set_quorum", "quorum": 1}},
                {{"op": "set_budget", "budget": 0.5}},
                {{"op": "add_member", "key": "{khub}", "name": "Hub", "role": "hub"}},
                {{"op": "add_member", "key": "{ks1}", "name": "S1", "role": "structure", "hub": "{khub}"}},
                {{"op": "add_member", "key": "{ks2}", "name": "S2", "role": "structure", "hub": "{khub}"}},
                {{"op": "add_member", "key": "{ks3}", "name": "S3", "role": "structure", "hub": "{khub}"}}]}}"#
        ),
    );
    run_ok(&["policy", "propose", "--dir", &hub, &genesis]);
    let sig = dir.join("sig.json").display().to_string();
    run_ok(&["policy", "sign", "--dir", &hub, "--out", &sig]);
    let adopted = run_json(&["policy", "adopt", "--dir", &hub, "--json"]);
    assert_eq!(adopted["adopted"], true, "{adopted}");
    let hash = adopted["hash"].as_str().unwrap_or_default().to_owned();
    assert_eq!(hash.len(), 64, "{adopted}");

    // A structure receives the adopted policy and releases under it, naming it.
    let share = dir.join("share").display().to_string();
    run_ok(&["policy", "export", "--dir", &hub, "--out", &share]);
    run_ok(&["policy", "import", "--dir", &s1, &share]);
    let v1 = release(&s1, &r1);
    assert_eq!(v1["params"], hash.as_str(), "{v1}");
    let epsilon = v1["epsilon"].as_f64().unwrap_or(f64::NAN);
    assert!(epsilon > 0.0 && epsilon <= 0.5 + 1e-12, "{v1}");

    // A structure that follows its local settings, and one under a policy of its own.
    let v2 = release(&s2, &r2);
    let local = v2["params"].as_str().unwrap_or_default().to_owned();
    assert!(local.starts_with("local/"), "{v2}");
    let own = write(
        dir,
        "own.json",
        &format!(
            r#"{{"edits": [
                {{"op": "add_committee_member", "key": "{ks3}", "name": "S3"}},
                {{"op": "set_quorum", "quorum": 1}}]}}"#
        ),
    );
    run_ok(&["policy", "propose", "--dir", &s3, &own]);
    run_ok(&["policy", "sign", "--dir", &s3]);
    let own_adopted = run_json(&["policy", "adopt", "--dir", &s3, "--json"]);
    let own_hash = own_adopted["hash"].as_str().unwrap_or_default().to_owned();
    assert_ne!(own_hash, hash);
    let v3 = release(&s3, &r3);
    assert_eq!(v3["params"], own_hash.as_str(), "{v3}");

    // No members.json: the hub admits the structures of its adopted registry.
    assert!(!Path::new(&hub).join("members.json").exists());
    let accepted = run_json(&["accept", "--dir", &hub, "--json", &r1]);
    assert_eq!(accepted["results"][0]["accepted"], true, "{accepted}");
    assert_eq!(accepted["log_size"], 1);

    let err = run_err(&["accept", "--dir", &hub, &r2]);
    assert!(err.contains(&format!("names the policy {local}")), "{err}");
    assert!(err.contains("is not an adopted policy's hash"), "{err}");
    assert!(
        err.contains(&format!(
            "this node accepts releases under the adopted policy {hash} (adoption n°1)"
        )),
        "{err}"
    );
    let err = run_err(&["accept", "--dir", &hub, &r3]);
    assert!(
        err.contains(&format!(
            "names the policy {own_hash}, which was never adopted on this network"
        )),
        "{err}"
    );
    let status = run_json(&["accept", "--dir", &hub, "--json", &r1]);
    assert_eq!(
        status["log_size"], 1,
        "refused releases never enter the log"
    );

    // The hub's audit bundle carries its adoption chain; the audit re-verifies it.
    let bundle = dir.join("bundle").display().to_string();
    run_ok(&[
        "log", "export", "--dir", &hub, "--period", "2026-09", "--out", &bundle,
    ]);
    let chain_file = Path::new(&bundle).join("policy-adoptions.json");
    let chain_text = std::fs::read_to_string(&chain_file).unwrap_or_default();
    assert!(chain_text.contains(&hash), "{chain_text}");
    run_ok(&["audit", &bundle]);
    // Pinned to the network's genesis, the audit passes; pinned elsewhere, it fails.
    run_ok(&["audit", &bundle, "--genesis", &hash]);
    let elsewhere = format!(
        "{}{}",
        if hash.starts_with('0') { "1" } else { "0" },
        &hash[1..]
    );
    let out = crate::support::run(&["audit", &bundle, "--genesis", &elsewhere, "--json"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        report["findings"][0]["kind"], "bad_policy_adoption",
        "{report}"
    );
    assert!(
        report["findings"][0]["what"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("not at the pinned genesis {elsewhere}")),
        "{report}"
    );
    // One altered committee signature fails the audit.
    let chain: serde_json::Value = serde_json::from_str(&chain_text).unwrap_or_default();
    let signature = chain[0]["record"]["signatures"][0]["signature"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(signature.len(), 128, "{chain_text}");
    let flipped = format!(
        "{}{}",
        if signature.starts_with('0') { "1" } else { "0" },
        &signature[1..]
    );
    if let Err(e) = std::fs::write(&chain_file, chain_text.replace(&signature, &flipped)) {
        panic!("write: {e}");
    }
    let out = crate::support::run(&["audit", &bundle, "--json"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let findings = report["findings"].to_string();
    assert!(findings.contains("bad_policy_adoption"), "{report}");
    assert!(findings.contains("policy-adoptions.json[0]"), "{report}");

    // A hub that logged a release under local settings and adopted a policy afterwards: the
    // audit names the release that followed no adopted policy.
    let (hub2, khub2) = init(dir, "hub2", "hub");
    run_ok(&["members", "add", "--dir", &hub2, "--from-node", &s2]);
    run_ok(&["accept", "--dir", &hub2, &r2]);
    let genesis2 = write(
        dir,
        "genesis2.json",
        &format!(
            r#"{{"edits": [
                {{"op": "add_committee_member", "key": "{khub2}", "name": "Hub 2"}},
                {{"op": "set_quorum", "quorum": 1}},
                {{"op": "add_member", "key": "{ks2}", "name": "S2", "role": "structure", "hub": "{khub2}"}},
                {{"op": "add_member", "key": "{khub2}", "name": "Hub 2", "role": "hub"}}]}}"#
        ),
    );
    run_ok(&["policy", "propose", "--dir", &hub2, &genesis2]);
    run_ok(&["policy", "sign", "--dir", &hub2]);
    run_ok(&["policy", "adopt", "--dir", &hub2]);
    let bundle2 = dir.join("bundle2").display().to_string();
    run_ok(&[
        "log", "export", "--dir", &hub2, "--period", "2026-09", "--out", &bundle2,
    ]);
    let out = crate::support::run(&["audit", &bundle2, "--json"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(findings[0]["kind"], "unadopted_policy", "{report}");
    assert_eq!(
        findings[0]["location"], "releases.jsonl:1.params",
        "{report}"
    );
    assert!(
        findings[0]["what"]
            .as_str()
            .unwrap_or_default()
            .contains(&local),
        "{report}"
    );
}

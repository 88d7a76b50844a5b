//! Governance over the network: three `maillage serve` processes (a national node and two
//! hubs) on loopback libp2p keep one policy document and one adoption chain. Concurrent
//! proposals converge; a version signed below the quorum is adopted nowhere; an adoption made
//! on one node reaches the others by gossip; a hub that was down during it catches up when it
//! comes back, then refuses releases under the superseded version (grace 0) and admits a
//! structure from the registry without any members.json.

use std::path::Path;
use std::time::Duration;

use crate::serve::{Served, wait_until};
use crate::support::{run, run_json, run_ok, write};

/// Where the daemons listen: loopback, a port the system picks.
const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

fn init(dir: &Path, name: &str, role: &str) -> (String, String) {
    let node = dir.join(name).display().to_string();
    run_ok(&[
        "init",
        "--dir",
        &node,
        "--role",
        role,
        "--name",
        name,
        "--code-insee",
        "69385",
    ]);
    let status = run_json(&["status", "--dir", &node, "--json"]);
    let key = status["identity"].as_str().unwrap_or_default().to_owned();
    assert_eq!(key.len(), 64, "{status}");
    (node, key)
}

fn show(node: &str) -> serde_json::Value {
    run_json(&["policy", "show", "--dir", node, "--json"])
}

fn document_hash(node: &str) -> String {
    show(node)["document"]["hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn adopted_sequence(node: &str) -> u64 {
    show(node)["adopted"]["sequence"].as_u64().unwrap_or(0)
}

/// A structure with activities for September 2026 (not released yet).
fn structure(dir: &Path, name: &str, seed: &str) -> (String, String) {
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
    (node, key)
}

#[test]
fn policy_converges_and_adoptions_spread_between_daemons() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (n, kn) = init(dir, "national", "national");
    let (h1, kh1) = init(dir, "hub1", "hub");
    let (h2, kh2) = init(dir, "hub2", "hub");
    let (s_old, ks_old) = structure(dir, "s-old", "21");
    let (s_new, ks_new) = structure(dir, "s-new", "22");

    // The genesis, adopted by N and H1 (quorum 2 of 3), copied to every node by hand.
    let genesis = write(
        dir,
        "genesis.toml",
        &format!(
            "[[edits]]\nop = \"add_committee_member\"\nkey = \"{kn}\"\nname = \"ANCT\"\n\
             [[edits]]\nop = \"add_committee_member\"\nkey = \"{kh1}\"\nname = \"Hub 1\"\n\
             [[edits]]\nop = \"add_committee_member\"\nkey = \"{kh2}\"\nname = \"Hub 2\"\n\
             [[edits]]\nop = \"set_quorum\"\nquorum = 2\n\
             [[edits]]\nop = \"add_member\"\nkey = \"{kn}\"\nname = \"National\"\nrole = \"national\"\n\
             [[edits]]\nop = \"add_member\"\nkey = \"{kh1}\"\nname = \"Hub 1\"\nrole = \"hub\"\n\
             [[edits]]\nop = \"add_member\"\nkey = \"{kh2}\"\nname = \"Hub 2\"\nrole = \"hub\"\n\
             [[edits]]\nop = \"add_member\"\nkey = \"{ks_old}\"\nname = \"S old\"\nrole = \"structure\"\nhub = \"{kh2}\"\n"
        ),
    );
    run_ok(&["policy", "propose", "--dir", &n, &genesis]);
    let share = dir.join("share").display().to_string();
    run_ok(&["policy", "export", "--dir", &n, "--out", &share]);
    run_ok(&["policy", "import", "--dir", &h1, &share]);
    let sig_h1 = dir.join("sig-h1.json").display().to_string();
    run_ok(&["policy", "sign", "--dir", &n]);
    run_ok(&["policy", "sign", "--dir", &h1, "--out", &sig_h1]);
    let adopted = run_json(&["policy", "adopt", "--dir", &n, &sig_h1, "--json"]);
    assert_eq!(adopted["adopted"], true, "{adopted}");
    let hash1 = adopted["hash"].as_str().unwrap_or_default().to_owned();
    run_ok(&["policy", "export", "--dir", &n, "--out", &share]);
    for node in [&h1, &h2, &s_old] {
        run_ok(&["policy", "import", "--dir", node, &share]);
    }
    // S old releases under the genesis.
    let old_release = dir.join("old.json").display().to_string();
    run_ok(&[
        "release",
        "--dir",
        &s_old,
        "--period",
        "2026-09",
        "--out",
        &old_release,
    ]);
    let text = std::fs::read_to_string(&old_release).unwrap_or_default();
    assert!(text.contains(&hash1), "{text}");

    let served_n = Served::start(&n);
    let served_h1 = Served::start_with(&h1, &["--listen", LOOPBACK, "--peer", &served_n.address]);
    let served_h2 = Served::start_with(&h2, &["--listen", LOOPBACK, "--peer", &served_n.address]);

    // Concurrent proposals on the three peers: ε, a new structure of hub 2, grace 0.
    let budget = write(
        dir,
        "budget.json",
        r#"{"edits": [{"op": "set_budget", "budget": 0.8}]}"#,
    );
    let member = write(
        dir,
        "member.json",
        &format!(
            r#"{{"edits": [{{"op": "add_member", "key": "{ks_new}", "name": "S new", "role": "structure", "hub": "{kh2}", "commune": "69385"}}]}}"#
        ),
    );
    let grace = write(
        dir,
        "grace.json",
        r#"{"edits": [{"op": "set_calendar", "superseded_grace_days": 0}]}"#,
    );
    let proposals: Vec<_> = [(&n, budget), (&h1, member), (&h2, grace)]
        .into_iter()
        .map(|(node, file)| {
            let node = node.clone();
            std::thread::spawn(move || run_ok(&["policy", "propose", "--dir", &node, &file]))
        })
        .collect();
    for p in proposals {
        p.join().expect("a proposal");
    }
    let converged = wait_until(60, || {
        let hashes = [document_hash(&n), document_hash(&h1), document_hash(&h2)];
        hashes.iter().all(|h| h.len() == 64 && *h == hashes[0])
    });
    assert!(
        converged,
        "documents did not converge: {} / {} / {}",
        show(&n),
        show(&h1),
        show(&h2)
    );
    let merged = show(&h2);
    let changes = merged["proposal"]["changes"].to_string();
    assert!(changes.contains("0.8"), "{merged}");
    assert!(changes.contains("S new"), "{merged}");
    assert!(changes.contains('0'), "{merged}");
    assert_eq!(merged["document"]["members"], 5, "{merged}");
    let hash2 = document_hash(&h2);

    // One signature (N's): not adopted, here or anywhere.
    run_ok(&["policy", "sign", "--dir", &n]);
    let one = run_json(&["policy", "adopt", "--dir", &n, "--json"]);
    assert_eq!(one["adopted"], false, "{one}");
    std::thread::sleep(Duration::from_secs(3));
    for node in [&n, &h1, &h2] {
        assert_eq!(adopted_sequence(node), 1, "{}", show(node));
    }

    // Hub 2 goes down; N and H1 adopt the merged version; gossip brings it to H1.
    drop(served_h2);
    let sig_h1b = dir.join("sig-h1b.json").display().to_string();
    run_ok(&["policy", "sign", "--dir", &h1, "--out", &sig_h1b]);
    let adopted = run_json(&["policy", "adopt", "--dir", &n, &sig_h1b, "--json"]);
    assert_eq!(adopted["adopted"], true, "{adopted}");
    assert_eq!(adopted["hash"], hash2.as_str());
    assert!(
        wait_until(30, || adopted_sequence(&h1) == 2),
        "H1 did not receive the adoption: {}",
        show(&h1)
    );
    assert_eq!(adopted_sequence(&h2), 1);

    // S new receives the new version (by hand) and releases under it.
    run_ok(&["policy", "export", "--dir", &n, "--out", &share]);
    run_ok(&["policy", "import", "--dir", &s_new, &share]);
    run_ok(&["release", "--dir", &s_new, "--period", "2026-09"]);

    // Hub 2 comes back and catches up.
    let served_h2 = Served::start_with(&h2, &["--listen", LOOPBACK, "--peer", &served_n.address]);
    assert!(
        wait_until(30, || adopted_sequence(&h2) == 2),
        "H2 did not catch up: {}",
        show(&h2)
    );
    assert_eq!(show(&h2)["adopted"]["hash"], hash2.as_str());
    assert!(!Path::new(&h2).join("members.json").exists());

    // Under the new version (grace 0) hub 2 refuses the release under the genesis, and admits
    // S new from the registry (no members.json) with its release under the new version.
    let refused = run(&[
        "submit",
        "--dir",
        &s_old,
        "--period",
        "2026-09",
        "--to",
        &served_h2.address,
    ]);
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{err}");
    assert!(err.contains(&hash1), "{err}");
    assert!(err.contains("superseded"), "{err}");
    let accepted = run(&[
        "submit",
        "--dir",
        &s_new,
        "--period",
        "2026-09",
        "--to",
        &served_h2.address,
    ]);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    drop(served_h1);
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// `GET /metrics` of a daemon's HTTP API, and the value of one counter.
fn metric(http: &str, name: &str) -> u64 {
    let (code, text) = crate::serve::http(http, "GET", "/metrics");
    assert_eq!(code, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Publishes each message on the policy topic from a swarm of its own (key seed `seed`: a new
/// peer each time) connected to `addr`, once the node has told it is subscribed.
fn gossip(addr: &str, seed: u8, messages: Vec<Vec<u8>>) {
    use libp2p::futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    use maillage_protocol::network::{
        MaillageBehaviourEvent, NetworkConfig, build_swarm, keypair_from_ed25519_secret,
        policy_topic,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut swarm = build_swarm(
            keypair_from_ed25519_secret([seed; 32]),
            &NetworkConfig::default(),
        )
        .expect("swarm");
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&policy_topic())
            .expect("subscribe");
        swarm
            .dial(addr.parse::<libp2p::Multiaddr>().expect("address"))
            .expect("dial");
        let subscribed = async {
            loop {
                if let SwarmEvent::Behaviour(MaillageBehaviourEvent::Gossipsub(
                    libp2p::gossipsub::Event::Subscribed { topic, .. },
                )) = swarm.select_next_some().await
                    && topic == policy_topic().hash()
                {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), subscribed)
            .await
            .expect("the node subscribes to policy adoptions");
        for m in messages {
            swarm
                .behaviour_mut()
                .gossipsub
                .publish(policy_topic(), m)
                .expect("publish");
        }
        // Let the messages go out.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                swarm.select_next_some().await;
            }
        })
        .await;
    });
}

#[test]
fn forged_and_replayed_adoptions_gossiped_are_rejected_and_a_valid_one_is_taken() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (n, kn) = init(dir, "national", "national");
    let (h1, kh1) = init(dir, "hub1", "hub");
    let (h2, kh2) = init(dir, "hub2", "hub");
    let genesis = write(
        dir,
        "genesis.toml",
        &format!(
            "[[edits]]\nop = \"add_committee_member\"\nkey = \"{kn}\"\nname = \"ANCT\"\n\
             [[edits]]\nop = \"add_committee_member\"\nkey = \"{kh1}\"\nname = \"Hub 1\"\n\
             [[edits]]\nop = \"add_committee_member\"\nkey = \"{kh2}\"\nname = \"Hub 2\"\n\
             [[edits]]\nop = \"set_quorum\"\nquorum = 2\n\
             [[edits]]\nop = \"add_member\"\nkey = \"{kn}\"\nname = \"National\"\nrole = \"national\"\n\
             [[edits]]\nop = \"add_member\"\nkey = \"{kh1}\"\nname = \"Hub 1\"\nrole = \"hub\"\n"
        ),
    );
    run_ok(&["policy", "propose", "--dir", &n, &genesis]);
    let share = dir.join("share").display().to_string();
    run_ok(&["policy", "export", "--dir", &n, "--out", &share]);
    run_ok(&["policy", "import", "--dir", &h1, &share]);
    let sig = |node: &str, name: &str| {
        let path = dir.join(name).display().to_string();
        run_ok(&["policy", "sign", "--dir", node, "--out", &path]);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&text).expect("signature JSON");
        (path, value)
    };
    let (g_h1, g_h1v) = sig(&h1, "g-h1.json");
    let (_, g_nv) = sig(&n, "g-n.json");
    let adopted = run_json(&["policy", "adopt", "--dir", &n, &g_h1, "--json"]);
    assert_eq!(adopted["adopted"], true, "{adopted}");
    let hash1 = adopted["hash"].as_str().unwrap_or_default().to_owned();

    // A second version proposed on N (so N's document holds it), signed by N and H1.
    let budget = write(
        dir,
        "budget.json",
        r#"{"edits": [{"op": "set_budget", "budget": 0.7}]}"#,
    );
    run_ok(&["policy", "propose", "--dir", &n, &budget]);
    run_ok(&["policy", "export", "--dir", &n, "--out", &share]);
    run_ok(&["policy", "import", "--dir", &h1, &share]);
    let shown = show(&n);
    let hash2 = shown["document"]["hash"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let heads: Vec<Vec<u8>> = shown["document"]["heads"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| unhex(h.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    assert!(!heads.is_empty(), "{shown}");
    let (_, s_n) = sig(&n, "s-n.json");
    let (_, s_h1) = sig(&h1, "s-h1.json");
    let target2 = serde_json::json!({"sequence": 2, "previous": hash1, "policy": hash2});
    assert_eq!(s_n["target"], target2);
    let record = |target: &serde_json::Value, sigs: &[&serde_json::Value]| {
        serde_json::to_vec(&serde_json::json!({
            "target": target,
            "signatures": sigs
                .iter()
                .map(|s| serde_json::json!({"signer": s["signer"], "signature": s["signature"]}))
                .collect::<Vec<_>>(),
            "heads": heads,
        }))
        .expect("record JSON")
    };
    // Forged: N's signature and H1's with one digit changed (one valid of a quorum of 2).
    let mut forged_h1 = s_h1.clone();
    let text = s_h1["signature"].as_str().unwrap_or_default();
    forged_h1["signature"] = serde_json::Value::String(format!(
        "{}{}",
        if text.starts_with('0') { "1" } else { "0" },
        &text[1..]
    ));
    let forged = record(&target2, &[&s_n, &forged_h1]);
    // Below the quorum: N's valid signature alone.
    let short = record(&target2, &[&s_n]);
    // Replayed: the genesis signatures under the new target.
    let replayed = record(&target2, &[&g_nv, &g_h1v]);
    // Replayed: the genesis record itself, again.
    let chain_text = std::fs::read_to_string(Path::new(&n).join("policy").join("adoptions.json"))
        .unwrap_or_default();
    let chain: serde_json::Value = serde_json::from_str(&chain_text).expect("chain JSON");
    let genesis_record = serde_json::to_vec(&chain[0]["record"]).expect("record");
    let garbage = b"{\"target\": 1}".to_vec();

    let served = Served::start(&n);
    let http = served.http.clone();
    assert!(!served.address.is_empty());
    gossip(
        &served.address,
        77,
        vec![forged, short, replayed, genesis_record, garbage],
    );
    assert!(
        wait_until(20, || metric(
            &http,
            "maillage_policy_adoptions_rejected_total"
        ) >= 5),
        "rejected: {}",
        metric(&http, "maillage_policy_adoptions_rejected_total")
    );
    assert_eq!(adopted_sequence(&n), 1, "{}", show(&n));

    // The control: the same step with a quorum of valid signatures is taken.
    gossip(&served.address, 78, vec![record(&target2, &[&s_n, &s_h1])]);
    assert!(
        wait_until(20, || adopted_sequence(&n) == 2),
        "the valid adoption was not taken: {}",
        show(&n)
    );
    assert_eq!(show(&n)["adopted"]["hash"], hash2.as_str());
    assert_eq!(metric(&http, "maillage_policy_adoptions_received_total"), 1);
    assert_eq!(metric(&http, "maillage_policy_adoptions_rejected_total"), 5);

    // Policy requests: a registry member gets the chain and a precise refusal of a malformed
    // sync message; a key outside the registry is refused; an oversized message is cut by the
    // codec; the node keeps answering.
    use maillage_protocol::network::{Request, Response};
    let addr: maillage_node::net::Multiaddr = served.address.parse().expect("address");
    let ask = |node: &str, requests: Vec<Request>| {
        let (_, identity) =
            maillage_node::Node::open_identity(Path::new(node)).expect("the node's key");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(maillage_node::net::ask(
                &identity,
                &addr,
                requests,
                Duration::from_secs(20),
            ))
    };
    let answers = ask(
        &h1,
        vec![
            Request::PolicySync {
                message: Some(vec![0x42; 100]),
            },
            Request::FetchAdoptions { after: 0 },
            Request::FetchAdoptions { after: 1 },
        ],
    )
    .expect("answers");
    match &answers[0] {
        Response::Refused { reason } => {
            assert!(reason.contains("policy sync message refused"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    match (&answers[1], &answers[2]) {
        (
            Response::PolicyAdoptions { records: all },
            Response::PolicyAdoptions { records: after },
        ) => {
            assert_eq!(all.len(), 2);
            assert_eq!(after.len(), 1);
            let text = String::from_utf8_lossy(&after[0].0).to_string();
            assert!(text.contains(&hash2), "{text}");
        }
        other => panic!("{other:?}"),
    }
    // Hub 2 sits on the committee but not in this registry.
    let answers = ask(&h2, vec![Request::FetchAdoptions { after: 0 }]).expect("answers");
    match &answers[0] {
        Response::Refused { reason } => assert!(
            reason.contains("neither a member of this node nor in its adopted policy's registry"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let oversized = ask(
        &h1,
        vec![Request::PolicySync {
            message: Some(vec![7; 2 * 1024 * 1024]),
        }],
    );
    assert!(oversized.is_err(), "{oversized:?}");
    let answers = ask(&h1, vec![Request::PolicySync { message: None }]).expect("answers");
    assert!(
        matches!(answers[0], Response::PolicySync { .. }),
        "{:?}",
        answers[0]
    );
}

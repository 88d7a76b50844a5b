//! Structures submitting releases to a hub over real libp2p connections (TCP on loopback),
//! through the real `maillage serve` and `maillage submit` processes.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::serve::{Served, free_port, http, wait_until};
use crate::support::{maillage, run, run_err, run_json, run_ok};

/// A structure in `root/name` with generated activities of `month`.
fn structure_of(root: &std::path::Path, name: &str, seed: u32, month: &str) -> String {
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
        "--from",
        month,
        "--months",
        "1",
    ]);
    run_ok(&["import", "--dir", &dir, &csv]);
    dir
}

/// A structure with September 2026's activities, released.
fn structure(root: &std::path::Path, name: &str, seed: u32) -> String {
    let dir = structure_of(root, name, seed, "2026-09");
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
    audit_hub(tmp.path(), &hub, 2);
}

/// Aggregates September at the hub in `hub`, exports its bundle and audits it: ok, with
/// `releases` releases verified.
fn audit_hub(tmp: &std::path::Path, hub: &str, releases: u32) {
    run_ok(&["aggregate", "--dir", hub, "--period", "2026-09"]);
    let bundle = tmp.join("bundle").display().to_string();
    run_ok(&[
        "log", "export", "--dir", hub, "--period", "2026-09", "--out", &bundle,
    ]);
    let out = run(&["audit", &bundle, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit json");
    assert_eq!(report["ok"], json!(true), "{report}");
    assert_eq!(report["releases_verified"], json!(releases));
}

/// Last month (by today's date).
fn last_month() -> maillage_protocol::Period {
    maillage_protocol::Period::of_date(time::OffsetDateTime::now_utc().date()).previous()
}

/// Adds `line` to the `[network]` section of a node's `maillage.toml`.
fn set_network(dir: &str, line: &str) {
    let config = std::path::Path::new(dir).join("maillage.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("[network]\n", &format!("[network]\n{line}\n")),
    )
    .expect("config");
}

/// A structure's daemon releases last month by itself on its release day (here: any day), when
/// the month has activities and no release yet; the outbox delivers it to the hub. A month
/// without activities is not released.
#[test]
fn a_structure_daemon_releases_last_month_on_its_release_day() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hub = tmp.path().join("hub").display().to_string();
    run_ok(&["init", "--dir", &hub, "--role", "hub", "--name", "Hub"]);
    let dir = structure_of(tmp.path(), "s", 5, &last_month().to_string());
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &dir]);
    set_network(&dir, "release_day = 1");

    let served = Served::start(&hub);
    let structure = Served::start_with(&dir, &["--peer", &served.address]);
    let period = json!(last_month().to_string());
    assert!(
        wait_until(30, || structure.status()["delivered"] == json!([period])),
        "released and delivered without being asked: {}",
        structure.status()
    );
    assert_eq!(served.status()["log_size"], json!(1), "{}", served.status());
    drop(structure);
    assert!(served.stop());
    // The release is the stored one, with its budget spent once.
    let budget = run_json(&["budget", "--dir", &dir, "--json"]);
    let text = budget.to_string();
    assert!(text.contains(&last_month().to_string()), "{budget}");
    assert!(
        !text.contains(&last_month().previous().to_string()),
        "a month without activities is not released: {budget}"
    );
}

/// On its deadline day (here: any day) a hub's daemon signs last month's aggregate by itself,
/// over the releases it has logged; a release that arrives after it is taken into a revision
/// without anyone asking; a restart signs nothing more.
#[test]
fn a_hub_daemon_signs_last_month_on_its_deadline_day_and_revises_it_for_late_releases() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hub = tmp.path().join("hub").display().to_string();
    run_ok(&["init", "--dir", &hub, "--role", "hub", "--name", "Hub"]);
    let mut files = Vec::new();
    let mut late = String::new();
    for (name, seed) in [("a", 1), ("b", 2), ("c", 3)] {
        let dir = structure_of(tmp.path(), name, seed, &last_month().to_string());
        run_ok(&["members", "add", "--dir", &hub, "--from-node", &dir]);
        if name == "c" {
            late = dir;
            continue;
        }
        let out = tmp.path().join(format!("{name}.release.json"));
        let out = out.display().to_string();
        run_ok(&[
            "release",
            "--dir",
            &dir,
            "--period",
            &last_month().to_string(),
            "--out",
            &out,
        ]);
        files.push(out);
    }
    let mut accept = vec!["accept", "--dir", &hub];
    accept.extend(files.iter().map(String::as_str));
    run_ok(&accept);
    set_network(&hub, "deadline_day = 1");

    let served = Served::start(&hub);
    let path = format!("/totals?indicator=activites&period={}", last_month());
    let totals =
        || -> serde_json::Value { serde_json::from_str(&served.get(&path).1).unwrap_or_default() };
    let contributors = |totals: &serde_json::Value| -> Vec<serde_json::Value> {
        totals["rows"]
            .as_array()
            .map(|rows| rows.iter().map(|r| r["contributors"].clone()).collect())
            .unwrap_or_default()
    };
    assert!(
        wait_until(20, || served.get(&path).0 == 200),
        "signed without being asked: {:?}",
        served.get(&path)
    );
    let first = totals();
    assert_eq!(contributors(&first), vec![json!(2), json!(2)], "{first}");
    assert!(
        first["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|r| r["members"] == json!(3)),
        "{first}"
    );

    // c releases late (its daemon, on its release day): the hub revises by itself.
    set_network(&late, "release_day = 1");
    let c = Served::start_with(&late, &["--peer", &served.address]);
    assert!(
        wait_until(30, || contributors(&totals()) == vec![json!(3), json!(3)]),
        "revised for the late release: {}",
        totals()
    );
    let revised = totals();
    drop(c);
    assert!(served.stop());

    // A restart signs nothing more: the same totals, and the period's deliveries to the
    // national node waiting (one shown: a revision is delivered after the aggregate it revises).
    let served = Served::start(&hub);
    std::thread::sleep(Duration::from_secs(2));
    let again: serde_json::Value = serde_json::from_str(&served.get(&path).1).expect("totals JSON");
    assert_eq!(again, revised);
    let status = served.status();
    assert_eq!(
        status["outbox"].as_array().map(Vec::len),
        Some(1),
        "{status}"
    );
    assert!(served.stop());
}

/// Structures submitting at the same moment: the hub accepts the releases that arrive together
/// as one batch (one checkpoint, one sync), and every structure still gets its own receipt.
#[test]
fn simultaneous_submissions_are_accepted_in_batches_each_with_its_receipt() {
    const STRUCTURES: u32 = 12;
    let tmp = tempfile::tempdir().expect("temp dir");
    let hub = tmp.path().join("hub").display().to_string();
    run_ok(&["init", "--dir", &hub, "--role", "hub", "--name", "Hub"]);
    let dirs: Vec<String> = (0..STRUCTURES)
        .map(|n| structure(tmp.path(), &format!("s{n}"), 10 + n))
        .collect();
    for dir in &dirs {
        run_ok(&["members", "add", "--dir", &hub, "--from-node", dir]);
    }
    let served = Served::start(&hub);
    let children: Vec<_> = dirs
        .iter()
        .map(|dir| {
            maillage()
                .args([
                    "submit",
                    "--dir",
                    dir,
                    "--period",
                    "2026-09",
                    "--to",
                    &served.address,
                    "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn submit")
        })
        .collect();
    let mut indexes = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("submit");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).expect("receipt");
        indexes.push(receipt["index"].as_u64().expect("an index"));
    }
    indexes.sort_unstable();
    assert_eq!(indexes, (0..u64::from(STRUCTURES)).collect::<Vec<_>>());
    let (code, metrics) = served.get("/metrics");
    assert_eq!(code, 200);
    let batches: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("maillage_ingest_batches_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the batch counter");
    assert!((1..=u64::from(STRUCTURES)).contains(&batches), "{metrics}");
    eprintln!("{STRUCTURES} simultaneous submissions accepted in {batches} batches");
    assert!(served.stop());
    audit_hub(tmp.path(), &hub, STRUCTURES);
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

/// The outbox: a structure's daemon delivers its release when its hub comes up, after being
/// killed while the hub was down; a hub that restarts while a structure waits gets the release
/// once. Nothing lost, nothing doubled; the HTTP API and /metrics show it.
#[test]
fn releases_reach_a_hub_that_was_down_nothing_lost_nothing_doubled() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hub = tmp.path().join("hub").display().to_string();
    run_ok(&["init", "--dir", &hub, "--role", "hub", "--name", "Hub"]);
    let a = structure(tmp.path(), "a", 1);
    let b = structure(tmp.path(), "b", 2);
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &a]);
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &b]);
    let port = free_port();
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");

    // The hub's address, learnt from a first start; then the hub is down.
    let served = Served::start_with(&hub, &["--listen", &listen]);
    let hub_addr = served.address.clone();
    assert!(served.stop(), "serve stops cleanly on SIGTERM");

    // Structure a waits for its hub, is killed, and comes back.
    let sa = Served::start_with(&a, &["--peer", &hub_addr]);
    assert!(
        wait_until(20, || {
            let s = sa.status();
            s["outbox"][0]["attempts"].as_u64().unwrap_or(0) >= 1
        }),
        "the release waits in the outbox: {}",
        sa.status()
    );
    let status = sa.status();
    assert_eq!(status["outbox"][0]["period"], json!("2026-09"), "{status}");
    assert!(
        status["outbox"][0]["last_error"].is_string(),
        "the status says why: {status}"
    );
    sa.crash();

    let served = Served::start_with(&hub, &["--listen", &listen]);
    let sa = Served::start_with(&a, &["--peer", &hub_addr]);
    assert!(
        wait_until(30, || sa.status()["delivered"] == json!(["2026-09"])),
        "delivered after the restart: {}",
        sa.status()
    );
    assert_eq!(sa.status()["outbox"], json!([]));
    let (code, metrics) = sa.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("maillage_delivered_total{kind=\"release\"} 1"),
        "{metrics}"
    );

    // Structure b starts while the hub is up, the hub goes down and comes back.
    assert!(served.stop());
    let sb = Served::start_with(&b, &["--peer", &hub_addr]);
    assert!(wait_until(20, || sb.status()["outbox"][0]["attempts"]
        .as_u64()
        .unwrap_or(0)
        >= 1));
    let served = Served::start_with(&hub, &["--listen", &listen]);
    assert!(
        wait_until(40, || sb.status()["delivered"] == json!(["2026-09"])),
        "delivered once the hub is back: {}",
        sb.status()
    );
    // a's daemon was running all along: it sends nothing again.
    assert_eq!(served.status()["log_size"], json!(2), "{}", served.status());
    let (code, totals) = served.get("/totals?indicator=activites&period=2026-09");
    assert_eq!(code, 404, "no aggregate yet: {totals}");
    let (code, body) = http(&served.http, "POST", "/aggregate?period=2026-09");
    assert_eq!(
        code, 401,
        "a POST without the node's token is refused: {body}"
    );
    assert!(body.contains("http.token"), "{body}");
    let (code, body) = served.post("/aggregate?period=2026-09");
    assert_eq!(code, 200, "{body}");
    let (code, totals) = served.get("/totals?indicator=activites&period=2026-09");
    assert_eq!(code, 200, "{totals}");
    let totals: serde_json::Value = serde_json::from_str(&totals).expect("totals JSON");
    assert_eq!(totals["rows"][0]["contributors"], json!(2), "{totals}");
    // A member asks over libp2p, by département and by région.
    for (by, territory) in [
        ("departement", "69 Rhône"),
        ("region", "84 Auvergne-Rhône-Alpes"),
    ] {
        let answer = run_json(&[
            "query",
            "--dir",
            &a,
            "--peer",
            &hub_addr,
            "--indicator",
            "activites",
            "--period",
            "2026-09",
            "--by",
            by,
            "--json",
        ]);
        let rows = answer["rows"].as_array().cloned().unwrap_or_default();
        assert_eq!(rows.len(), 2, "individuel and collectif: {answer}");
        for row in &rows {
            assert_eq!(row["territory"], json!(territory), "{answer}");
            assert_eq!(row["contributors"], json!(2), "{answer}");
            assert_eq!(row["members"], json!(2), "{answer}");
        }
        // The breakdown of a single territory sums to the hub's total.
        let total: f64 = totals["rows"]
            .as_array()
            .map(|r| r.iter().filter_map(|x| x["estimate"].as_f64()).sum())
            .unwrap_or(-1.0);
        let parts: f64 = rows.iter().filter_map(|x| x["estimate"].as_f64()).sum();
        assert_eq!(total, parts, "{answer}");
    }
    let err = run_err(&[
        "query",
        "--dir",
        &a,
        "--peer",
        &hub_addr,
        "--indicator",
        "nope",
        "--period",
        "2026-09",
    ]);
    assert!(err.contains("unknown indicator"), "{err}");
    drop(sa);
    drop(sb);
    assert!(served.stop());
}

/// Hostile messages from a member: a release that is not one, a release of another signer, an
/// oversized request. Each is refused or cut, and the hub goes on serving.
#[test]
fn malformed_and_oversized_messages_are_refused_and_the_hub_survives() {
    use maillage_protocol::network::{Request, Response};
    let tmp = tempfile::tempdir().expect("temp dir");
    let hub = tmp.path().join("hub").display().to_string();
    run_ok(&["init", "--dir", &hub, "--role", "hub", "--name", "Hub"]);
    let a = structure(tmp.path(), "a", 1);
    let b = structure(tmp.path(), "b", 2);
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &a]);
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &b]);
    let served = Served::start(&hub);
    let addr: maillage_node::net::Multiaddr = served.address.parse().expect("address");
    let node_a = maillage_node::Node::open(std::path::Path::new(&a)).expect("open a");
    let timeout = Duration::from_secs(20);
    let ask = |request: Request| {
        maillage_node::net::request_once(&node_a.identity, &addr, request, timeout)
    };

    let garbage = ask(Request::SubmitRelease {
        release: vec![0xff; 300],
    })
    .expect("an answer");
    assert!(
        matches!(&garbage, Response::Refused { reason } if reason.contains("invalid release")),
        "{garbage:?}"
    );
    let node_b = maillage_node::Node::open(std::path::Path::new(&b)).expect("open b");
    let bs_release = node_b
        .stored_release("2026-09".parse().expect("period"))
        .expect("read")
        .expect("b's release");
    drop(node_b);
    let foreign = ask(Request::SubmitRelease {
        release: bs_release,
    })
    .expect("an answer");
    assert!(
        matches!(&foreign, Response::Refused { reason } if reason.contains("own releases")),
        "{foreign:?}"
    );
    // Over the 1 MiB request bound: the stream is cut, the request fails, nothing is stored.
    let oversized = ask(Request::SubmitRelease {
        release: vec![0u8; 2 * 1024 * 1024],
    });
    assert!(oversized.is_err(), "{oversized:?}");
    // The hub still serves, and stored nothing of the above.
    let status = served.status();
    assert_eq!(status["log_size"], json!(0), "{status}");
    let receipt = run_json(&[
        "submit",
        "--dir",
        &b,
        "--period",
        "2026-09",
        "--to",
        &served.address,
        "--json",
    ]);
    assert_eq!(receipt["index"], json!(0), "{receipt}");
    let (code, metrics) = served.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("outcome=\"refused\"} 2"),
        "two refusals counted: {metrics}"
    );
    drop(node_a);
    assert!(served.stop());
}

/// A hub delivers its aggregate to the national node over libp2p, then a late release arrives,
/// the hub signs a revision and its outbox delivers it like any aggregate: the national node
/// logs both (the revision as the new head, not an equivocation) and sums the revision.
#[test]
fn a_hub_revision_after_a_late_release_reaches_the_national_node() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let national = tmp.path().join("national").display().to_string();
    let hub = tmp.path().join("hub").display().to_string();
    run_ok(&[
        "init", "--dir", &national, "--role", "national", "--name", "National",
    ]);
    run_ok(&["init", "--dir", &hub, "--role", "hub", "--name", "Hub"]);
    run_ok(&["members", "add", "--dir", &national, "--from-node", &hub]);
    let a = structure(tmp.path(), "a", 1);
    let late = structure(tmp.path(), "late", 2);
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &a]);
    run_ok(&["members", "add", "--dir", &hub, "--from-node", &late]);

    let served_national = Served::start(&national);
    let served_hub = Served::start_with(
        &hub,
        &[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--peer",
            &served_national.address,
        ],
    );
    let sa = Served::start_with(&a, &["--peer", &served_hub.address]);
    assert!(
        wait_until(30, || sa.status()["delivered"] == json!(["2026-09"])),
        "{}",
        sa.status()
    );
    // Delivered: the period has an upstream receipt and nothing is queued (the hub may also
    // sign last month's aggregate on its own at the deadline; it is delivered the same way).
    let delivered = || {
        let s = served_hub.status();
        s["outbox"] == json!([])
            && s["delivered"]
                .as_array()
                .is_some_and(|d| d.contains(&json!("2026-09")))
    };
    let (code, body) = served_hub.post("/aggregate?period=2026-09");
    assert_eq!(code, 200, "{body}");
    assert!(
        wait_until(30, delivered),
        "the first aggregate reaches the national node: {}",
        served_hub.status()
    );

    // The late structure delivers; the hub signs the period again: a revision.
    let sl = Served::start_with(&late, &["--peer", &served_hub.address]);
    assert!(
        wait_until(30, || sl.status()["delivered"] == json!(["2026-09"])),
        "{}",
        sl.status()
    );
    let (code, body) = served_hub.post("/aggregate?period=2026-09");
    assert_eq!(code, 200, "{body}");
    // Queued before the answer; delivered when the outbox is empty again.
    assert!(
        wait_until(30, delivered),
        "the revision reaches the national node: hub {}, national {}",
        served_hub.status(),
        served_national.status()
    );
    drop(sa);
    drop(sl);
    assert!(served_hub.stop());
    assert!(served_national.stop());

    // Offline: both aggregates of 2026-09 are in the national log, the second revising the
    // first; the national aggregate sums the revision, covering both structures.
    let total = run_json(&[
        "aggregate",
        "--dir",
        &national,
        "--period",
        "2026-09",
        "--json",
    ]);
    let bundle = tmp.path().join("national-bundle").display().to_string();
    run_ok(&[
        "log", "export", "--dir", &national, "--period", "2026-09", "--out", &bundle,
    ]);
    let log = std::fs::read_to_string(std::path::Path::new(&bundle).join("contributions.jsonl"))
        .expect("contributions");
    let september: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("line"))
        .filter(|l| l["aggregate"]["period"] == json!("2026-09"))
        .collect();
    assert_eq!(september.len(), 2, "{log}");
    let first =
        maillage_protocol::SignedAggregate::from_json(&september[0]["aggregate"].to_string())
            .expect("first");
    let revision =
        maillage_protocol::SignedAggregate::from_json(&september[1]["aggregate"].to_string())
            .expect("revision");
    revision.check_revises(&first).expect("a valid revision");
    assert_eq!(
        total["contributions"].as_array().map(Vec::len),
        Some(1),
        "{total}"
    );
    assert_eq!(
        total["contributions"][0]["index"], september[1]["index"],
        "{total}"
    );
    assert_eq!(
        total["contributions"][0]["id"],
        json!(revision.id().to_string()),
        "{total}"
    );
    assert_eq!(total["structures"], json!(2), "{total}");
    let out = run(&["audit", &bundle, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("audit json");
    // The national node was given no hub bundles over the network: the chain to the releases
    // is not in the bundle, and only that is reported.
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    assert!(
        findings
            .iter()
            .all(|f| f["kind"] == json!("missing_hub_bundle")),
        "{report}"
    );
}

/// Whoever starts the daemon may stop reading its stdout (`maillage serve | head -1`, a
/// supervisor that only wanted the address): a closed stdout must not stop the node.
#[test]
fn the_daemon_keeps_serving_when_its_stdout_is_closed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hub = tmp.path().join("hub").display().to_string();
    run_ok(&["init", "--dir", &hub, "--role", "hub", "--name", "Hub"]);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = maillage()
        .args(["serve", "--dir", &hub, "--http", &addr])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    // Close the read end before the daemon prints its addresses.
    drop(child.stdout.take());
    let answered = wait_until(30, || {
        std::net::TcpStream::connect(&addr).is_ok() && http(&addr, "GET", "/status").0 == 200
    });
    // Still running a moment after it printed (or failed to print) its addresses.
    std::thread::sleep(Duration::from_millis(500));
    let alive = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered, "the daemon never answered on {addr}");
    assert!(alive, "the daemon stopped once its stdout was closed");
}

/// `maillage import` and `maillage release` while `maillage serve` holds the store go through
/// the daemon's HTTP API: the same report, the same refusals, the activities stored and kept
/// after the daemon stops, the same release. With the API off, the import says what to do.
#[test]
fn import_and_release_go_through_a_running_daemon() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("s").display().to_string();
    run_ok(&[
        "init",
        "--dir",
        &dir,
        "--name",
        "S",
        "--code-insee",
        "69385",
    ]);
    let csv = tmp.path().join("activités.csv").display().to_string();
    run_ok(&["generate", "--out", &csv, "--seed", "4", "--months", "2"]);
    let bad = tmp.path().join("bad.csv").display().to_string();
    std::fs::write(
        &bad,
        "activite_id,date,type,duree\na1,2026-09-31,individuel,30\na2,2026-09-02,atelier,30\n",
    )
    .expect("write");

    let served = Served::start_with(&dir, &[]);
    // POST requests need the daemon's token, readable by the node's owner only.
    let token = std::path::Path::new(&dir).join("http.token");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token).expect("token").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let (code, body) = http(&served.http, "POST", "/import?name=x.csv");
    assert_eq!(code, 401, "{body}");
    // A wrong token (say, a file from an earlier start): the daemon's refusal is what the
    // import says, not a broken pipe.
    let good = std::fs::read_to_string(&token).expect("token");
    std::fs::write(&token, "0".repeat(64)).expect("token");
    let refused = run_err(&["import", "--dir", &dir, &csv]);
    assert!(refused.contains("needs the node's token"), "{refused}");
    std::fs::write(&token, good).expect("token");
    let out = run_ok(&["import", "--dir", &dir, &csv]);
    assert!(
        out.contains("Import de") && out.contains("activités.csv"),
        "{out}"
    );
    let again = run_json(&["import", "--dir", &dir, &csv, "--json"]);
    assert_eq!(again["ok"], json!(true), "{again}");
    assert_eq!(again["summary"]["added"], json!(0), "unchanged: {again}");
    assert!(
        again["summary"]["unchanged"].as_u64().unwrap_or(0) > 0,
        "{again}"
    );
    // A refused file: every invalid cell, nothing stored.
    let refused = run(&["import", "--dir", &dir, &bad, "--json"]);
    assert!(!refused.status.success());
    let report: serde_json::Value = serde_json::from_slice(&refused.stdout).expect("JSON");
    let lines: Vec<u64> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["line"].as_u64())
        .collect();
    assert_eq!(lines, vec![2, 3], "{report}");
    let text = run_err(&["import", "--dir", &dir, &bad]);
    assert!(text.contains("line 2") && text.contains("date"), "{text}");
    let (code, figures) = served.get("/indicators?period=2026-09");
    assert_eq!(code, 200, "{figures}");
    let figures: serde_json::Value = serde_json::from_str(&figures).expect("JSON");
    let release = run_json(&["release", "--dir", &dir, "--period", "2026-09", "--json"]);
    let text = run_ok(&["release", "--dir", &dir, "--period", "2026-09"]);
    assert!(text.contains("redonnée à l'identique"), "{text}");
    assert!(served.stop());
    assert_eq!(
        run_json(&["release", "--dir", &dir, "--period", "2026-09", "--json"]),
        release,
        "the release the daemon made is the stored one"
    );
    assert!(
        !std::path::Path::new(&dir).join("http.addr").exists(),
        "the address file goes with the daemon"
    );
    // Stored for good, as the daemon showed them, and recorded under the file's name.
    let local = run_json(&["indicators", "--dir", &dir, "--period", "2026-09", "--json"]);
    assert_eq!(local, figures);
    assert!(
        local["indicators"]["activites"]["individuel"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    let status = run_json(&["status", "--dir", &dir, "--json"]);
    assert_eq!(
        status["imports"],
        json!(2),
        "the refused file is not an import: {status}"
    );

    // A daemon without its HTTP API: the import says what to do.
    let served = Served::start_with(&dir, &[]);
    let addr = std::fs::read_to_string(std::path::Path::new(&dir).join("http.addr"));
    assert!(addr.is_ok());
    drop(served);
    let mut quiet = maillage()
        .args(["serve", "--dir", &dir, "--http", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    assert!(wait_until(20, || {
        run(&["import", "--dir", &dir, &csv])
            .status
            .code()
            .is_some_and(|c| c != 0)
    }));
    let err = run_err(&["import", "--dir", &dir, &csv]);
    assert!(err.contains("HTTP API is off"), "{err}");
    let _ = quiet.kill();
    let _ = quiet.wait();
}

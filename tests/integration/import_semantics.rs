//! Import semantics and exact indicators against files written to DATA.md, checked through the
//! real `maillage` binary and hand-computed expected values.

use crate::support::{init_structure, run_err, run_json, run_ok, write};
use serde_json::{Value, json};

const HEADER: &str = "activite_id,date,type,duree,type_lieu,lieu_code_insee,thematiques,materiel,autonomie,oriente_vers_structure,niveau_atelier,beneficiaire_id,premier_accompagnement,genre,tranche_age,statut_social,commune_code_insee";

/// October 2026, with one row in September and one in November that must not count.
fn file_a() -> String {
    [
        HEADER,
        "i1,2026-10-03,individuel,30,lieu_activite,69385,email|sante,telephone,autonome,oui,,p1,oui,feminin,soixante_dix_plus,retraite,69385",
        "i2,2026-10-10,individuel,45,,,navigation_sur_internet,,partiellement_autonome,non,,p1,non,feminin,soixante_soixante_neuf,retraite,",
        "i3,2026-10-10,demarche_administrative,20,,,logement,,,,,,oui,,,,",
        "w1,2026-10-12,collectif,120,lieu_activite,69385,bureautique,ordinateur,,,debutant,p1,non,,quarante_cinquante_neuf,,",
        "w1,2026-10-12,collectif,120,lieu_activite,69385,bureautique|email,ordinateur,,oui,debutant,p2,oui,masculin,vingt_cinq_trente_neuf,en_emploi,",
        "w1,2026-10-12,collectif,120,lieu_activite,69385,bureautique,ordinateur,autonome,,debutant,,,,douze_dix_huit,scolarise,",
        "s1,2026-09-30,individuel,60,,,email,,autonome,oui,,p3,oui,,,,",
        "n1,2026-11-01,individuel,60,,,email,,autonome,oui,,p1,,,,,",
    ]
    .join("\n")
        + "\n"
}

fn zeros(categories: &[&str]) -> serde_json::Map<String, Value> {
    categories
        .iter()
        .map(|c| ((*c).to_owned(), json!(0)))
        .collect()
}

fn thematiques(nonzero: &[(&str, u64)]) -> Value {
    let mut map = zeros(&[
        "diagnostic_numerique",
        "prendre_en_main_du_materiel",
        "maintenance_de_materiel",
        "gere_ses_contenus_numeriques",
        "navigation_sur_internet",
        "email",
        "bureautique",
        "reseaux_sociaux",
        "sante",
        "banque_et_achats_en_ligne",
        "entrepreneuriat",
        "insertion_professionnelle",
        "securite_numerique",
        "parentalite",
        "scolarite_et_numerique",
        "creer_avec_le_numerique",
        "culture_numerique",
        "intelligence_artificielle",
        "aide_aux_demarches_administratives",
    ]);
    for (k, v) in nonzero {
        map.insert((*k).to_owned(), json!(v));
    }
    Value::Object(map)
}

fn bands(all: &[&str], nonzero: &[(&str, u64)]) -> Value {
    let mut map = zeros(all);
    for (k, v) in nonzero {
        map.insert((*k).to_owned(), json!(v));
    }
    Value::Object(map)
}

const AGES: &[&str] = &[
    "moins_de_douze",
    "douze_dix_huit",
    "dix_huit_vingt_quatre",
    "vingt_cinq_trente_neuf",
    "quarante_cinquante_neuf",
    "soixante_soixante_neuf",
    "soixante_dix_plus",
    "non_communique",
];
const STATUSES: &[&str] = &[
    "scolarise",
    "sans_emploi",
    "en_emploi",
    "retraite",
    "non_communique",
];
const AUTONOMIE: &[&str] = &[
    "entierement_accompagne",
    "partiellement_autonome",
    "autonome",
];

fn indicators(node: &str, period: &str) -> Value {
    run_json(&["indicators", "--dir", node, "--period", period, "--json"])
}

#[test]
fn exact_indicators_follow_data_md() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    let a = write(tmp.path(), "a.csv", &file_a());
    run_ok(&["import", "--dir", &node, &a]);

    let expected = json!({
        "period": "2026-10",
        "indicators": {
            "activites": {"individuel": 3, "collectif": 1},
            "accompagnements": {"individuel": 3, "collectif": 3},
            // p1, p2, and the two anonymous rows
            "beneficiaires": 4,
            "nouveaux_beneficiaires": 3,
            // the workshop counts once
            "duree_minutes": 215,
            // the legacy type adds aide_aux_demarches_administratives; logement is a module theme
            "thematiques": thematiques(&[("email", 2), ("sante", 1), ("navigation_sur_internet", 1), ("bureautique", 3), ("aide_aux_demarches_administratives", 1)]),
            // p1's latest row is the workshop (quarante_cinquante_neuf, no status)
            "tranches_age": bands(AGES, &[("quarante_cinquante_neuf", 1), ("vingt_cinq_trente_neuf", 1), ("douze_dix_huit", 1), ("non_communique", 1)]),
            "statuts_sociaux": bands(STATUSES, &[("non_communique", 2), ("en_emploi", 1), ("scolarise", 1)]),
            // only individual rows count; i3 has none
            "autonomie": bands(AUTONOMIE, &[("autonome", 1), ("partiellement_autonome", 1)]),
            "orientations": 2,
        }
    });
    assert_eq!(indicators(&node, "2026-10"), expected);
    assert_eq!(
        indicators(&node, "2026-09")["indicators"]["beneficiaires"],
        json!(1)
    );
    assert_eq!(
        indicators(&node, "2026-11")["indicators"]["duree_minutes"],
        json!(60)
    );
    assert_eq!(
        indicators(&node, "2026-12")["indicators"]["beneficiaires"],
        json!(0)
    );
}

#[test]
fn latest_row_is_by_date_then_import_order_and_reimport_changes_nothing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    let a = write(tmp.path(), "a.csv", &file_a());
    // Same date as the workshop, imported later: p2's latest row.
    let b = write(
        tmp.path(),
        "b.csv",
        &format!(
            "{HEADER}\ni9,2026-10-12,individuel,15,,,,,,,,p2,non,masculin,soixante_dix_plus,retraite,\n"
        ),
    );
    run_ok(&["import", "--dir", &node, &a]);
    run_ok(&["import", "--dir", &node, &b]);
    let after_b = indicators(&node, "2026-10");
    let ages = &after_b["indicators"]["tranches_age"];
    assert_eq!(ages["soixante_dix_plus"], json!(1), "{ages}");
    assert_eq!(ages["vingt_cinq_trente_neuf"], json!(0), "{ages}");

    // Importing a file again changes nothing, even after another import.
    let again = run_json(&["import", "--dir", &node, &a, "--json"]);
    assert_eq!(again["summary"]["unchanged"], json!(6), "{again}");
    assert_eq!(again["summary"]["added"], json!(0));
    assert_eq!(indicators(&node, "2026-10"), after_b);
}

#[test]
fn reimporting_an_activity_replaces_it_even_across_months() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    let a = write(tmp.path(), "a.csv", &file_a());
    run_ok(&["import", "--dir", &node, &a]);
    // An overlapping later export: i2 corrected to November, w1 now with 2 participants.
    let c = write(
        tmp.path(),
        "c.csv",
        &[
            HEADER,
            "i2,2026-11-02,individuel,45,,,navigation_sur_internet,,partiellement_autonome,non,,p1,non,feminin,soixante_soixante_neuf,retraite,",
            "w1,2026-10-12,collectif,90,lieu_activite,69385,bureautique,ordinateur,,,debutant,p1,non,,quarante_cinquante_neuf,,",
            "w1,2026-10-12,collectif,90,lieu_activite,69385,bureautique,ordinateur,,,debutant,p4,oui,,,,",
        ]
        .join("\r\n"),
    );
    let summary = run_json(&["import", "--dir", &node, &c, "--json"]);
    assert_eq!(summary["summary"]["replaced"], json!(2), "{summary}");
    let oct = indicators(&node, "2026-10");
    assert_eq!(
        oct["indicators"]["activites"],
        json!({"individuel": 2, "collectif": 1})
    );
    assert_eq!(
        oct["indicators"]["accompagnements"],
        json!({"individuel": 2, "collectif": 2})
    );
    assert_eq!(oct["indicators"]["duree_minutes"], json!(30 + 20 + 90));
    let nov = indicators(&node, "2026-11");
    assert_eq!(
        nov["indicators"]["activites"],
        json!({"individuel": 2, "collectif": 0})
    );
    let status = run_json(&["status", "--dir", &node, "--json"]);
    assert_eq!(status["activities"], json!(6));
    assert_eq!(status["periods"]["2026-11"]["activities"], json!(2));
}

#[test]
fn one_invalid_row_rejects_the_whole_file_and_every_error_is_listed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    let text = [
        HEADER,
        "ok1,2026-10-03,individuel,30,,,email,,,,,,,,,,",
        "bad1,2026-10-32,individuel,30,,,email,,,,,,,,,,",
        "bad2,2026-10-03,individuel,30,,,e-mail,,,,,,,,,,",
        "bad3,2026-10-03,individuel,30,,,,,,,,,,,,,75999",
    ]
    .join("\n");
    let file = write(tmp.path(), "bad.csv", &text);
    let report = run_json_err(&["import", "--dir", &node, &file, "--json"]);
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    let lines: Vec<u64> = errors.iter().filter_map(|e| e["line"].as_u64()).collect();
    assert_eq!(lines, vec![3, 4, 5], "{report}");
    assert_eq!(errors[0]["column"], json!("date"));
    assert_eq!(errors[1]["column"], json!("thematiques"));
    assert_eq!(errors[1]["value"], json!("e-mail"));
    assert!(
        errors[1]["message"]
            .as_str()
            .unwrap_or("")
            .contains("navigation_sur_internet")
    );
    assert_eq!(errors[2]["column"], json!("commune_code_insee"));

    let human = run_err(&["import", "--dir", &node, &file]);
    assert!(human.contains("line 3, column date"), "{human}");
    assert!(human.contains("nothing was imported"), "{human}");
    let status = run_json(&["status", "--dir", &node, "--json"]);
    assert_eq!(
        status["activities"],
        json!(0),
        "nothing of a rejected file is stored"
    );
}

fn run_json_err(args: &[&str]) -> Value {
    let out = crate::support::run(args);
    assert!(!out.status.success(), "should fail: {args:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("no JSON on stdout ({e})"))
}

#[test]
fn spreadsheet_exports_are_accepted_as_they_come() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    // BOM, CRLF, columns in another order, padded and quoted cells, an unknown column.
    let text = "\u{feff}Remarque, duree ,date,type,activite_id,thematiques,beneficiaire_id\r\n\
                \"vu en mairie, bureau 2\", 45 ,2026-10-05,individuel,\" a1 \",\"email | sante\",p1\r\n";
    let file = write(tmp.path(), "export.csv", text);
    let out = crate::support::run(&["import", "--dir", &node, &file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Remarque"),
        "unknown column warned"
    );
    let oct = indicators(&node, "2026-10");
    assert_eq!(oct["indicators"]["duree_minutes"], json!(45));
    assert_eq!(oct["indicators"]["thematiques"]["sante"], json!(1));
}

#[test]
fn header_errors_name_the_problem() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    let empty = write(tmp.path(), "empty.csv", "");
    assert!(run_err(&["import", "--dir", &node, &empty]).contains("empty"));
    let missing = write(
        tmp.path(),
        "missing.csv",
        "activite_id,date,type\na,2026-10-01,individuel\n",
    );
    assert!(
        run_err(&["import", "--dir", &node, &missing]).contains("missing required column(s) duree")
    );
    let header_only = write(tmp.path(), "header.csv", "activite_id,date,type,duree\n");
    assert!(run_ok(&["import", "--dir", &node, &header_only]).contains("0 ligne"));
    let nofile = tmp.path().join("nope.csv").display().to_string();
    assert!(run_err(&["import", "--dir", &node, &nofile]).contains("nope.csv"));
}

#[test]
fn generated_data_round_trips_through_import() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    let csv = tmp.path().join("gen.csv").display().to_string();
    run_ok(&[
        "generate",
        "--out",
        &csv,
        "--seed",
        "11",
        "--from",
        "2026-01",
        "--months",
        "3",
        "--activities-per-month",
        "40",
    ]);
    run_ok(&["import", "--dir", &node, &csv]);
    let status = run_json(&["status", "--dir", &node, "--json"]);
    let periods = status["periods"].as_object().cloned().unwrap_or_default();
    assert_eq!(
        periods.keys().collect::<Vec<_>>(),
        vec!["2026-01", "2026-02", "2026-03"]
    );
    // Sums of per-month figures equal the whole.
    let rows: u64 = periods.values().filter_map(|p| p["rows"].as_u64()).sum();
    assert_eq!(Some(rows), status["rows"].as_u64());
    let mut accompaniments = 0;
    for p in periods.keys() {
        let ind = indicators(&node, p);
        accompaniments += ind["indicators"]["accompagnements"]["individuel"]
            .as_u64()
            .unwrap_or(0)
            + ind["indicators"]["accompagnements"]["collectif"]
                .as_u64()
                .unwrap_or(0);
    }
    assert_eq!(accompaniments, rows);
}

#[test]
fn corsican_overseas_arrondissement_and_former_commune_codes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let node = init_structure(tmp.path());
    let text = [
        HEADER,
        // Ajaccio (2A), Bastia (2B), Saint-Denis de La Réunion, Mamoudzou, Marseille 1er, Paris 20e
        "c1,2026-10-01,individuel,30,lieu_activite,2A004,email,,,,,x1,,,,,2B033",
        "c2,2026-10-01,individuel,30,lieu_activite,97411,email,,,,,x2,,,,,97611",
        "c3,2026-10-01,individuel,30,lieu_activite,13201,email,,,,,x3,,,,,75120",
        // Cordieux, a former commune now part of Montluel (01262)
        "c4,2026-10-01,individuel,30,lieu_activite,01120,email,,,,,x4,,,,,01120",
    ]
    .join("\n");
    let file = write(tmp.path(), "codes.csv", &text);
    run_ok(&["import", "--dir", &node, &file]);
    assert_eq!(
        indicators(&node, "2026-10")["indicators"]["beneficiaires"],
        json!(4)
    );

    // Saint-Pierre-et-Miquelon is not one of the 101 départements; 20xxx never exists.
    for bad in ["97502", "20004", "69999"] {
        let text = format!("{HEADER}\nz,2026-10-01,individuel,30,lieu_activite,{bad},,,,,,,,,,,\n");
        let file = write(tmp.path(), "bad-code.csv", &text);
        let err = run_err(&["import", "--dir", &node, &file]);
        assert!(
            err.contains(bad) && err.contains("lieu_code_insee"),
            "{err}"
        );
    }
    assert_eq!(
        run_json(&["status", "--dir", &node, "--json"])["activities"],
        json!(4)
    );
}

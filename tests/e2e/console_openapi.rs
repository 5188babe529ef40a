//! The admin API against its own OpenAPI document: the document is valid
//! OpenAPI 3 (schemathesis loads it), and schemathesis, given a bounded
//! budget, calls every operation with generated input against the running
//! daemon and checks that no answer is a server error, that statuses,
//! content types and bodies match the document, that input the document
//! rules out is refused, and that undocumented methods get 405.
//!
//! schemathesis comes from PyPI (`scripts/test.sh` installs it); without it this
//! test fails with a message saying so, rather than passing unchecked.

use std::time::Duration;

use outboxd_testkit::{Daemon, TestDb};

use crate::support::BIN;
const TOKEN: &str = "openapi-token-0123456789abcdef";

#[tokio::test]
async fn the_api_answers_as_its_openapi_document_says() {
    let version = std::process::Command::new("schemathesis")
        .arg("--version")
        .output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "schemathesis is not installed (`pip install schemathesis`; scripts/test.sh installs it): {:?}",
        version.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
    );

    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO outbox.event_types (name, description, example_payload) VALUES
               ('payment.received', 'A payment was captured.', '{\"amount\": 4200}');
             INSERT INTO outbox.webhooks (name, url, event_types)
               VALUES ('Billing', 'http://127.0.0.1:9/hooks', '{payment.*}');",
        )
        .await
        .unwrap();
    // Test events go nowhere slow: the receivers of generated URLs are
    // most often missing.
    let (daemon, port) = Daemon::start_with_console(
        BIN,
        &db.url,
        Some(TOKEN),
        &[("OUTBOXD_REQUEST_TIMEOUT", "1s")],
    )
    .await;

    let run = tokio::process::Command::new("schemathesis")
        .args([
            "run",
            &format!("http://127.0.0.1:{port}/api/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,negative_data_rejection,unsupported_method",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "15",
            "--seed",
            "7",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--no-color",
            "--generation-database",
            "none",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its crash cache goes to the working directory: keep it out of the tree.
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis finishes within 5 minutes")
        .expect("running schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found answers that do not match /api/openapi.json:\n{report}\n--- daemon log ---\n{}",
        daemon.plain_log()
    );
    assert!(report.contains("passed"), "{report}");
}

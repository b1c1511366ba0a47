//! The served OpenAPI document is valid: it passes `openapi-spec-validator` (the schema of
//! its OpenAPI version and the rules a schema cannot say, such as one operation per
//! `operationId` and path parameters that are declared), and every operation has an id of
//! its own, so clients generated from it get one function per operation.

use e2e::{Backend, TestApp};
use reqwest::StatusCode;
use std::collections::HashMap;
use std::process::Command;

/// Runs `python3 -m openapi_spec_validator` on `file`: `(passed, what it printed)`.
fn validate(file: &std::path::Path) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("python3 does not run ({e}): the OpenAPI test needs it"));
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !printed.contains("No module named openapi_spec_validator"),
        "the OpenAPI validator is missing: `pip install openapi-spec-validator` (.ci/run does)"
    );
    (out.status.success(), printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_passes_a_validator() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = app.api().get("/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);

    let mut ids: HashMap<String, Vec<String>> = HashMap::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            ids.entry(id).or_default().push(format!("{method} {path}"));
        }
    }
    let shared: Vec<_> = ids.iter().filter(|(_, ops)| ops.len() > 1).collect();
    assert!(shared.is_empty(), "operationIds used twice: {shared:?}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc.body).unwrap()).unwrap();
    let (passed, printed) = validate(&file);
    assert!(passed, "the OpenAPI document is not valid:\n{printed}");

    // The validator does refuse an invalid document (so a pass means something): two
    // operations sharing an id.
    let mut broken = doc.body.clone();
    broken["paths"]["/api/v1/users/me"]["get"]["operationId"] = "getUser".into();
    std::fs::write(&file, serde_json::to_vec_pretty(&broken).unwrap()).unwrap();
    let (passed, printed) = validate(&file);
    assert!(
        !passed,
        "a document with a shared operationId passed:\n{printed}"
    );
}

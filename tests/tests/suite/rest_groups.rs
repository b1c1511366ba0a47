//! Groups and their membership rules over real HTTP, on both storage backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;

async fn group_membership_rules(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let api = app.api();
    let owner = api.register("Olivia").await;
    let ben = api.register("Ben").await;
    let cat = api.register("Cat").await;
    let dan = api.register("Dan").await;

    let created = api
        .post(
            "/api/v1/conversations",
            owner.t(),
            json!({"type": "group", "participant_ids": [ben.id, cat.id], "title": "Launch"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["title"], "Launch");
    let roles: Vec<(String, String)> = created.body["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user_id"].as_str().unwrap().to_owned(),
                p["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(roles.contains(&(owner.id.clone(), "owner".into())));
    assert!(roles.contains(&(ben.id.clone(), "member".into())));
    assert_eq!(roles.len(), 3);

    // Everyone in the group sees a message; an outsider does not.
    let msgs = format!("/api/v1/conversations/{id}/messages");
    let m = api.post(&msgs, ben.t(), json!({"content": "hi all"})).await;
    assert_eq!(m.status, StatusCode::CREATED);
    for u in [&owner, &cat] {
        let h = api.get(&msgs, u.t()).await;
        assert_eq!(h.body[0]["content"], "hi all");
    }
    let outsider = api.get(&msgs, dan.t()).await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);
    assert_eq!(outsider.error_code(), "not_participant");

    // A plain member may not add, remove or rename.
    let members = format!("/api/v1/conversations/{id}/members");
    let r = api
        .post(&members, ben.t(), json!({"user_id": dan.id}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let r = api.delete(&format!("{members}/{}", cat.id), ben.t()).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let r = api
        .patch(
            &format!("/api/v1/conversations/{id}"),
            ben.t(),
            json!({"title": "Mine"}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );

    // The owner adds Dan (who then reads the group) and renames it; adding him twice conflicts.
    let r = api
        .post(&members, owner.t(), json!({"user_id": dan.id}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["participants"].as_array().unwrap().len(), 4);
    let r = api
        .post(&members, owner.t(), json!({"user_id": dan.id}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::CONFLICT, "already_member")
    );
    assert_eq!(api.get(&msgs, dan.t()).await.status, StatusCode::OK);
    // Joining late: what was said before is not unread for Dan.
    assert_eq!(api.get("/api/v1/unread", dan.t()).await.body["total"], 0);
    let r = api
        .patch(
            &format!("/api/v1/conversations/{id}"),
            owner.t(),
            json!({"title": "Launch v2"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["title"], "Launch v2");

    // Unknown users cannot be added.
    let r = api
        .post(
            &members,
            owner.t(),
            json!({"user_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "user_not_found")
    );

    // The owner removes Cat: Cat is out at once.
    let r = api
        .delete(&format!("{members}/{}", cat.id), owner.t())
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert_eq!(api.get(&msgs, cat.t()).await.status, StatusCode::FORBIDDEN);
    let r = api
        .post(&msgs, cat.t(), json!({"content": "let me in"}))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "not_participant")
    );
    assert!(api
        .get("/api/v1/conversations", cat.t())
        .await
        .body
        .as_array()
        .unwrap()
        .is_empty());

    // Ben leaves on his own; the owner leaves and ownership passes on.
    let r = api
        .post(
            &format!("/api/v1/conversations/{id}/leave"),
            ben.t(),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api
        .post(
            &format!("/api/v1/conversations/{id}/leave"),
            owner.t(),
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let details = api
        .get(&format!("/api/v1/conversations/{id}"), dan.t())
        .await;
    let parts = details.body["participants"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["user_id"], dan.id.as_str());
    assert_eq!(parts[0]["role"], "owner");

    // Direct conversations cannot be left or renamed.
    let direct = api
        .post(
            "/api/v1/conversations",
            dan.t(),
            json!({"type": "direct", "participant_ids": [ben.id]}),
        )
        .await;
    let did = direct.body["id"].as_str().unwrap();
    let r = api
        .post(
            &format!("/api/v1/conversations/{did}/leave"),
            dan.t(),
            json!({}),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "not_a_group")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_rules_hold_on_sqlite() {
    group_membership_rules(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_rules_hold_on_postgres() {
    group_membership_rules(Backend::Postgres).await;
}

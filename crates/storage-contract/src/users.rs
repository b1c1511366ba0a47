//! Contract of `UserStore`.

use crate::fixtures::{later, new_user, user, user_with_email};
use crate::Store;
use domain::ports::InsertUserError;
use domain::user::EmailAddress;
use domain::UserId;

/// A user reads back by email (with its hash) and by id.
pub async fn an_inserted_user_is_found_by_email_and_by_id(store: Store) {
    let new = new_user("Alice", &format!("alice-{}@example.com", UserId::new()));
    let inserted = store.insert_user(&new).await.unwrap();
    assert_eq!(inserted.id, new.id);
    assert_eq!(inserted.email, new.email);
    assert_eq!(inserted.created_at, new.created_at);
    let creds = store
        .credentials_by_email(&new.email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.user, inserted);
    assert_eq!(creds.password_hash, new.password_hash);
    assert_eq!(store.user_by_id(new.id).await.unwrap(), Some(inserted));
    assert_eq!(store.user_by_id(UserId::new()).await.unwrap(), None);
    let unknown = EmailAddress::parse("nobody@example.com").unwrap();
    assert!(store
        .credentials_by_email(&unknown)
        .await
        .unwrap()
        .is_none());
}

/// The email is unique, and a refused insert changes nothing.
pub async fn a_second_account_with_the_same_email_is_a_duplicate(store: Store) {
    let email = format!("dup-{}@example.com", UserId::new());
    let first = user_with_email(&store, "First", &email).await;
    let second = new_user("Second", &email);
    let err = store.insert_user(&second).await.unwrap_err();
    assert!(
        matches!(err, InsertUserError::DuplicateEmail),
        "got {err:?}"
    );
    assert_eq!(store.user_by_id(second.id).await.unwrap(), None);
    let creds = store
        .credentials_by_email(&first.email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(creds.user.id, first.id);
}

/// Racing registrations of one email: exactly one wins, the rest are duplicates.
pub async fn concurrent_registrations_of_one_email_make_one_account(store: Store) {
    let email = format!("race-{}@example.com", UserId::new());
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let new = new_user(&format!("Racer {i}"), &email);
            tokio::spawn(async move { store.insert_user(&new).await })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(InsertUserError::DuplicateEmail) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(ok, 1);
}

/// Unknown ids are left out, not errors.
pub async fn users_by_ids_returns_only_those_that_exist(store: Store) {
    let a = user(&store, "A").await;
    let b = user(&store, "B").await;
    let mut found: Vec<UserId> = store
        .users_by_ids(&[a.id, UserId::new(), b.id])
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    found.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(found, want);
    assert!(store.users_by_ids(&[]).await.unwrap().is_empty());
}

/// Substring of the name or prefix of the email, any case; never the caller.
pub async fn search_matches_names_and_email_prefixes_case_insensitively_but_never_the_caller(
    store: Store,
) {
    let tag = UserId::new().simple_tag();
    let me = user_with_email(
        &store,
        &format!("Me Johnson {tag}"),
        &format!("me-{tag}@example.com"),
    )
    .await;
    let john = user_with_email(
        &store,
        &format!("Johnny {tag}"),
        &format!("jj-{tag}@example.com"),
    )
    .await;
    let mail = user_with_email(&store, "Zed", &format!("johnmail{tag}@example.com")).await;
    let _other = user_with_email(&store, "Someone Else", &format!("else-{tag}@example.com")).await;

    let by_name: Vec<UserId> = store
        .search_users(&format!("JOHNNY {tag}"), 10, me.id)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(by_name, vec![john.id]);

    let by_email: Vec<UserId> = store
        .search_users(&format!("JohnMail{tag}"), 10, me.id)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(by_email, vec![mail.id]);

    // The caller matches by name but is never offered.
    let mine = store
        .search_users(&format!("johnson {tag}"), 10, me.id)
        .await
        .unwrap();
    assert!(mine.is_empty());
    // An email substring that is not a prefix does not match.
    let middle = store
        .search_users(&format!("mail{tag}"), 10, me.id)
        .await
        .unwrap();
    assert!(middle.is_empty());
}

/// `%` and `_` in a query are characters, not wildcards.
pub async fn search_treats_percent_and_underscore_literally(store: Store) {
    let tag = UserId::new().simple_tag();
    let me = user(&store, "Me").await;
    let literal = user(&store, &format!("100% {tag}")).await;
    let _decoy = user(&store, &format!("100x {tag}")).await;
    let found: Vec<UserId> = store
        .search_users(&format!("100% {tag}"), 10, me.id)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(found, vec![literal.id]);
    // A lone `%` finds only the name that holds one, not everybody.
    let percent: Vec<UserId> = store
        .search_users("%", 10, me.id)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(percent, vec![literal.id]);
    assert!(store
        .search_users(&format!("100_ {tag}"), 10, me.id)
        .await
        .unwrap()
        .is_empty());
}

/// Results come alphabetically by display name, at most `limit`.
pub async fn search_orders_by_display_name_and_respects_the_limit(store: Store) {
    let tag = UserId::new().simple_tag();
    let me = user(&store, "Me").await;
    for name in ["Carol", "alice", "Bob"] {
        user(&store, &format!("{name} {tag}")).await;
    }
    let names: Vec<String> = store
        .search_users(&tag, 10, me.id)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.display_name.as_str().to_owned())
        .collect();
    assert_eq!(names.len(), 3);
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(
        names.iter().map(|n| n.to_lowercase()).collect::<Vec<_>>(),
        sorted.iter().map(|n| n.to_lowercase()).collect::<Vec<_>>()
    );
    assert_eq!(store.search_users(&tag, 2, me.id).await.unwrap().len(), 2);
}

/// `last_seen_at` takes the time recorded, keeps the latest of several, and an unknown user
/// is no error.
pub async fn last_seen_is_recorded_and_never_moves_backwards(store: Store) {
    let (a, b) = (user(&store, "A").await, user(&store, "B").await);
    assert_eq!(a.last_seen_at, None);
    let (earlier, latest) = (later(10), later(20));
    store.touch_last_seen(a.id, latest).await.unwrap();
    store.touch_last_seen(a.id, earlier).await.unwrap();
    let seen = store.user_by_id(a.id).await.unwrap().unwrap().last_seen_at;
    assert_eq!(seen, Some(latest));
    let untouched = store.user_by_id(b.id).await.unwrap().unwrap().last_seen_at;
    assert_eq!(untouched, None);
    store.touch_last_seen(UserId::new(), latest).await.unwrap();
}

/// A short unique tag for search tests, from an id.
trait SimpleTag {
    fn simple_tag(&self) -> String;
}

impl SimpleTag for UserId {
    fn simple_tag(&self) -> String {
        self.as_uuid().simple().to_string()[20..].to_owned()
    }
}

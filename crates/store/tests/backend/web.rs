//! What the HTTP service keeps: API tokens and idempotent responses.

use quota_store::prelude::*;
use quota_store::{Conflict, PlanChange, StoreError, StoredResponse};

use crate::Backend;

pub fn an_idempotent_response_is_stored_once<S: Backend>(store: &S) {
    let response = StoredResponse {
        request_sha256: "abc".into(),
        status_code: 201,
        response_json: "{}".into(),
    };
    assert_eq!(store.idempotent_response("alice", "k1").unwrap(), None);
    let mut tx = store.begin_write().unwrap();
    tx.store_idempotent_response("alice", "k1", &response, 100)
        .unwrap();
    assert!(matches!(
        tx.store_idempotent_response("alice", "k1", &response, 101),
        Err(StoreError::Conflict(Conflict::IdempotencyKey(_)))
    ));
    tx.store_idempotent_response("bob", "k1", &response, 100)
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(
        store.idempotent_response("alice", "k1").unwrap(),
        Some(response.clone())
    );
    assert_eq!(
        store.idempotent_response_committed("bob", "k1").unwrap(),
        Some(response)
    );
    assert_eq!(store.expire_idempotency_keys(101).unwrap(), 2);
    assert_eq!(store.idempotent_response("alice", "k1").unwrap(), None);
}

pub fn a_token_names_its_user<S: Backend>(store: &S) {
    store
        .set_plan("test", "free", &PlanChange::default(), 0)
        .unwrap();
    store
        .create_user_with_token("test", "alice", "free", "sha-of-token", 0)
        .unwrap();
    assert_eq!(
        store.user_for_token("sha-of-token").unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(store.user_for_token("other").unwrap(), None);
    assert!(matches!(
        store.create_user_with_token("test", "alice", "free", "another", 0),
        Err(StoreError::UserExists(_))
    ));
    assert_eq!(store.user_for_token("another").unwrap(), None);
}

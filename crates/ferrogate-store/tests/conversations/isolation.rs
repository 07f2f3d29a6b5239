//! Ownership: another tenant's ids are NotFound everywhere; the per-tenant cap.

use std::sync::Arc;

use ferrogate_core::conversations::{ConversationError, ConversationStore, ListQuery, Metadata};
use ferrogate_core::tenancy::TenantId;

use crate::fixtures::*;
use crate::harness::TestDb;

fn is_not_found<T: std::fmt::Debug>(r: Result<T, ConversationError>, what: &str) {
    match r {
        Err(ConversationError::NotFound { what: w, .. }) if w == what => {}
        other => panic!("expected {what} NotFound, got {other:?}"),
    }
}

pub async fn another_tenant_sees_nothing(db: &TestDb) {
    let s = &db.store;
    let (a, b) = (owner("tenant-a"), owner("tenant-b"));
    let conv = create(s, &a, vec![user("secret question")]).await;
    let item = s.history(&a, &conv.id, ALL).await.unwrap().1[0].clone();
    let resp = response(&a, None, None, &[assistant("secret answer")]);
    s.store_response(resp.clone(), vec![user("q")]).await.unwrap();

    is_not_found(s.get_conversation(&b, &conv.id).await, "conversation");
    is_not_found(s.history(&b, &conv.id, ALL).await, "conversation");
    is_not_found(s.list_items(&b, &conv.id, &ListQuery::default()).await, "conversation");
    is_not_found(s.get_item(&b, &conv.id, &item.id).await, "conversation");
    is_not_found(s.delete_item(&b, &conv.id, &item.id).await, "conversation");
    is_not_found(s.update_metadata(&b, &conv.id, Metadata::new()).await, "conversation");
    is_not_found(s.add_items(&b, &conv.id, vec![user("x")], None).await, "conversation");
    is_not_found(s.append_turn(&b, turn(&b, &conv, 0, "q", "a")).await, "conversation");
    is_not_found(s.delete_conversation(&b, &conv.id).await, "conversation");
    is_not_found(s.get_response(&b, &resp.id).await, "response");
    is_not_found(s.response_input(&b, &resp.id).await, "response");
    is_not_found(s.delete_response(&b, &resp.id).await, "response");
    assert_eq!(s.count_conversations(&TenantId::from("tenant-b")).await.unwrap(), 0);

    // Nothing of A's was touched by B's attempts.
    let (still, items) = s.history(&a, &conv.id, ALL).await.unwrap();
    assert_eq!((still.version, texts(&items)), (0, vec!["secret question".to_owned()]));
    assert_eq!(s.get_response(&a, &resp.id).await.unwrap(), resp);
    assert_eq!(s.count_conversations(&TenantId::from("tenant-a")).await.unwrap(), 1);
}

pub async fn the_cap_counts_one_tenant_only(db: &TestDb) {
    let s = &db.store;
    let (a, b) = (owner("capped"), owner("other"));
    let capped = |o| ferrogate_core::conversations::NewConversation { cap: Some(2), ..new_conversation(o, vec![]) };
    let first = s.create_conversation(capped(&a)).await.unwrap();
    s.create_conversation(capped(&a)).await.unwrap();
    let err = s.create_conversation(capped(&a)).await.unwrap_err();
    assert!(matches!(err, ConversationError::CapReached { limit: 2 }), "{err:?}");
    s.create_conversation(capped(&b)).await.unwrap();
    s.delete_conversation(&a, &first.id).await.unwrap();
    s.create_conversation(capped(&a)).await.unwrap();
    assert_eq!(s.count_conversations(&a.tenant).await.unwrap(), 2);
}

pub async fn the_cap_is_exact_under_concurrent_creates(db: &TestDb) {
    let s = Arc::new(db.store.clone());
    let a = owner("racing");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (s, a) = (s.clone(), a.clone());
            tokio::spawn(async move {
                let new =
                    ferrogate_core::conversations::NewConversation { cap: Some(4), ..new_conversation(&a, vec![]) };
                s.create_conversation(new).await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => created += 1,
            Err(ConversationError::CapReached { limit: 4 }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(created, 4);
    assert_eq!(s.count_conversations(&a.tenant).await.unwrap(), 4);
}

//! Appending turns: atomic, version-checked, serialized under concurrency.

use std::collections::HashSet;
use std::sync::Arc;

use ferrogate_core::conversations::{ConversationError, ConversationStore, ListQuery, Order};

use crate::fixtures::*;
use crate::harness::TestDb;

pub async fn a_failed_turn_leaves_nothing_behind(db: &TestDb) {
    let s = &db.store;
    let a = owner("t");
    let conv = create(s, &a, vec![user("first")]).await;
    let taken = s.history(&a, &conv.id, ALL).await.unwrap().1[0].clone();
    // The output reuses an existing item id: the last insert of the turn fails.
    let mut bad = turn(&a, &conv, 0, "lost question", "lost answer");
    bad.output.push(taken);
    let response_id = bad.response.as_ref().unwrap().id.clone();
    assert!(s.append_turn(&a, bad).await.is_err());
    let (after, items) = s.history(&a, &conv.id, ALL).await.unwrap();
    assert_eq!(after.version, 0, "the version bump was rolled back");
    assert_eq!(texts(&items), ["first"], "no item of the failed turn landed");
    assert!(matches!(s.get_response(&a, &response_id).await, Err(ConversationError::NotFound { .. })));
    // The same version still works: the failed turn claimed nothing.
    s.append_turn(&a, turn(&a, &conv, 0, "q", "a")).await.unwrap();
    let (_, items) = s.history(&a, &conv.id, ALL).await.unwrap();
    assert_eq!(texts(&items), ["first", "q", "a"]);
}

pub async fn concurrent_turns_on_one_version_one_wins(db: &TestDb) {
    let s = Arc::new(db.store.clone());
    let a = owner("t");
    let conv = create(&s, &a, vec![]).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (s, a, conv) = (s.clone(), a.clone(), conv.clone());
            tokio::spawn(async move { s.append_turn(&a, turn(&a, &conv, 0, &format!("q{i}"), &format!("a{i}"))).await })
        })
        .collect();
    let (mut won, mut conflicts) = (Vec::new(), 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => won.push(c.version),
            Err(ConversationError::Conflict { expected: 0, found: 1, .. }) => conflicts += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((won, conflicts), (vec![1], 9));
    let (_, items) = s.history(&a, &conv.id, ALL).await.unwrap();
    assert_eq!(items.len(), 2, "only the winner's turn");
}

pub async fn retried_turns_all_land_in_order(db: &TestDb) {
    let s = Arc::new(db.store.clone());
    let a = owner("t");
    let conv = create(&s, &a, vec![]).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (s, a, conv) = (s.clone(), a.clone(), conv.clone());
            tokio::spawn(async move {
                let mut conflicts = 0;
                loop {
                    let (now, _) = s.history(&a, &conv.id, ALL).await.unwrap();
                    let t = turn(&a, &conv, now.version, &format!("q{i}"), &format!("a{i}"));
                    match s.append_turn(&a, t).await {
                        Ok(_) => return conflicts,
                        Err(ConversationError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e:?}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let (after, items) = s.history(&a, &conv.id, ALL).await.unwrap();
    assert_eq!(after.version, 10);
    let got = texts(&items);
    assert_eq!(got.len(), 20);
    // Every question is followed at once by its own answer: turns never interleave.
    for pair in got.chunks(2) {
        assert_eq!(pair[0].replace('q', "a"), pair[1], "{got:?}");
    }
    let unique: HashSet<_> = got.iter().collect();
    assert_eq!(unique.len(), 20, "no duplicates");
    // The pages agree with the history (no gaps in positions).
    let q = ListQuery { after: None, limit: 100, order: Order::Asc };
    let page = s.list_items(&a, &conv.id, &q).await.unwrap();
    assert_eq!(texts(&page.items), got);
}

pub async fn items_added_and_deleted_bump_the_version(db: &TestDb) {
    let s = &db.store;
    let a = owner("t");
    let conv = create(s, &a, vec![user("one")]).await;
    let c = s.add_items(&a, &conv.id, vec![user("two"), assistant("three")], None).await.unwrap();
    assert_eq!(c.version, 1);
    let (_, items) = s.history(&a, &conv.id, ALL).await.unwrap();
    assert_eq!(texts(&items), ["one", "two", "three"]);
    assert_eq!(s.get_item(&a, &conv.id, &items[1].id).await.unwrap(), items[1]);
    let c = s.delete_item(&a, &conv.id, &items[1].id).await.unwrap();
    assert_eq!(c.version, 2);
    let err = s.get_item(&a, &conv.id, &items[1].id).await.unwrap_err();
    assert!(matches!(err, ConversationError::NotFound { what: "item", .. }), "{err:?}");
    let err = s.delete_item(&a, &conv.id, &items[1].id).await.unwrap_err();
    assert!(matches!(err, ConversationError::NotFound { what: "item", .. }), "{err:?}");
    assert_eq!(s.get_conversation(&a, &conv.id).await.unwrap().version, 2, "a failed delete bumps nothing");
    // A turn read before the delete now conflicts.
    let err = s.append_turn(&a, turn(&a, &conv, 1, "q", "a")).await.unwrap_err();
    assert!(matches!(err, ConversationError::Conflict { expected: 1, found: 2, .. }), "{err:?}");
}

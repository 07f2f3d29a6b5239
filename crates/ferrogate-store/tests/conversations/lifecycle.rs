//! Durability, retention, pagination, response chains, metadata.

use ferrogate_core::conversations::{
    ConversationError, ConversationStore, ListQuery, Metadata, NewConversation, Order, ResponseId,
};
use ferrogate_core::tenancy::time::now_ms;
use ferrogate_store::Store;

use crate::fixtures::*;
use crate::harness::{TestDb, options};

pub async fn everything_survives_reopening_the_store(db: &TestDb) {
    let a = owner("t");
    let (conv, resp) = {
        let s = &db.store;
        let conv = create(s, &a, vec![user("hello")]).await;
        let t = turn(&a, &conv, 0, "q", "a");
        let resp = t.response.clone().unwrap();
        s.append_turn(&a, t).await.unwrap();
        s.close().await;
        (conv, resp)
    };
    let reopened = Store::connect_with(&db.url, &options()).await.unwrap();
    let (c, items) = reopened.history(&a, &conv.id, ALL).await.unwrap();
    assert_eq!((c.version, texts(&items)), (1, vec!["hello".to_owned(), "q".into(), "a".into()]));
    assert_eq!(reopened.get_response(&a, &resp.id).await.unwrap(), resp);
    assert_eq!(texts(&reopened.response_input(&a, &resp.id).await.unwrap()), ["q"]);
    reopened.close().await;
}

pub async fn expired_state_is_invisible_then_purged(db: &TestDb) {
    let s = &db.store;
    let a = owner("t");
    let now = now_ms();
    let expired = NewConversation { expires_at_ms: Some(now - 1), ..new_conversation(&a, vec![user("old")]) };
    let old = s.create_conversation(expired).await.unwrap();
    let fresh = NewConversation { expires_at_ms: Some(now + 3_600_000), ..new_conversation(&a, vec![user("new")]) };
    let live = s.create_conversation(fresh).await.unwrap();
    let mut gone = response(&a, None, None, &[assistant("x")]);
    gone.expires_at_ms = Some(now - 1);
    s.store_response(gone.clone(), vec![]).await.unwrap();

    assert!(matches!(s.get_conversation(&a, &old.id).await, Err(ConversationError::NotFound { .. })));
    assert!(matches!(s.get_response(&a, &gone.id).await, Err(ConversationError::NotFound { .. })));
    assert_eq!(s.count_conversations(&a.tenant).await.unwrap(), 1, "expired ones do not count");

    let purged = s.purge_expired(now).await.unwrap();
    assert_eq!((purged.conversations, purged.items, purged.responses), (1, 1, 1));
    assert_eq!(s.purge_expired(now).await.unwrap().conversations, 0, "idempotent");
    assert!(s.get_conversation(&a, &live.id).await.is_ok());
    // Appending slides the expiry forward.
    let later = now + 7_200_000;
    let mut t = turn(&a, &live, 0, "q", "a");
    t.expires_at_ms = Some(later);
    assert_eq!(s.append_turn(&a, t).await.unwrap().expires_at_ms, Some(later));
    let purged = s.purge_expired(now + 3_600_000).await.unwrap();
    assert_eq!(purged.conversations, 0, "the slid expiry holds");
    let purged = s.purge_expired(later).await.unwrap();
    assert_eq!((purged.conversations, purged.items), (1, 3));
}

pub async fn item_pages_follow_the_cursor_both_ways(db: &TestDb) {
    let s = &db.store;
    let a = owner("t");
    let items: Vec<_> = (0..7).map(|i| user(&i.to_string())).collect();
    let conv = create(s, &a, items).await;
    let mut seen = Vec::new();
    let mut q = ListQuery { after: None, limit: 3, order: Order::Asc };
    loop {
        let page = s.list_items(&a, &conv.id, &q).await.unwrap();
        seen.extend(texts(&page.items));
        if !page.has_more {
            break;
        }
        q.after = page.items.last().map(|i| i.id.clone());
    }
    assert_eq!(seen, ["0", "1", "2", "3", "4", "5", "6"]);
    let (_, tail) = s.history(&a, &conv.id, 3).await.unwrap();
    assert_eq!(texts(&tail), ["4", "5", "6"], "the latest items, oldest first");
    let desc = s.list_items(&a, &conv.id, &ListQuery { after: None, limit: 2, order: Order::Desc }).await.unwrap();
    assert_eq!((texts(&desc.items), desc.has_more), (vec!["6".to_owned(), "5".into()], true));
    let next = ListQuery { after: desc.items.last().map(|i| i.id.clone()), limit: 100, order: Order::Desc };
    assert_eq!(texts(&s.list_items(&a, &conv.id, &next).await.unwrap().items), ["4", "3", "2", "1", "0"]);
    let wire = desc.to_wire();
    assert_eq!(wire.first_id.as_deref(), Some(desc.items[0].id.as_str()));
    let unknown = ListQuery { after: Some(ferrogate_core::conversations::ItemId::generate()), ..ListQuery::default() };
    assert!(matches!(
        s.list_items(&a, &conv.id, &unknown).await,
        Err(ConversationError::NotFound { what: "item", .. })
    ));

    // A response's input items page the same way.
    let r = response(&a, None, None, &[]);
    s.store_response(r.clone(), (0..5).map(|i| user(&i.to_string())).collect()).await.unwrap();
    let page =
        s.response_input_page(&a, &r.id, &ListQuery { after: None, limit: 2, order: Order::Desc }).await.unwrap();
    assert_eq!((texts(&page.items), page.has_more), (vec!["4".to_owned(), "3".into()], true));
}

pub async fn responses_chain_through_previous_ids(db: &TestDb) {
    let s = &db.store;
    let a = owner("t");
    let r1 = response(&a, None, None, &[assistant("a1")]);
    s.store_response(r1.clone(), vec![user("q1")]).await.unwrap();
    let r2 = response(&a, None, Some(&r1.id), &[assistant("a2")]);
    s.store_response(r2.clone(), vec![user("q2")]).await.unwrap();
    let r3 = response(&a, None, Some(&r2.id), &[assistant("a3")]);
    s.store_response(r3.clone(), vec![user("q3")]).await.unwrap();
    let chain = s.response_chain(&a, &r3.id, 10).await.unwrap();
    assert_eq!(texts(&chain), ["q1", "a1", "q2", "a2", "q3", "a3"]);
    assert_eq!(texts(&s.response_chain(&a, &r3.id, 2).await.unwrap()), ["q2", "a2", "q3", "a3"]);
    s.delete_response(&a, &r1.id).await.unwrap();
    assert_eq!(texts(&s.response_chain(&a, &r3.id, 10).await.unwrap()), ["q2", "a2", "q3", "a3"], "ends at a gap");
    let missing = s.response_chain(&a, &ResponseId::generate(), 10).await;
    assert!(matches!(missing, Err(ConversationError::NotFound { what: "response", .. })));
}

pub async fn metadata_updates_and_conversation_delete(db: &TestDb) {
    let s = &db.store;
    let a = owner("t");
    let meta: Metadata = [("topic".to_owned(), "demo".to_owned())].into();
    let conv =
        s.create_conversation(NewConversation { metadata: meta.clone(), ..new_conversation(&a, vec![user("x")]) });
    let conv = conv.await.unwrap();
    assert_eq!(s.get_conversation(&a, &conv.id).await.unwrap().metadata, meta);
    let new_meta: Metadata = [("topic".to_owned(), "other".to_owned())].into();
    let updated = s.update_metadata(&a, &conv.id, new_meta.clone()).await.unwrap();
    assert_eq!((updated.metadata, updated.version), (new_meta, 0));
    s.delete_conversation(&a, &conv.id).await.unwrap();
    assert!(matches!(s.get_conversation(&a, &conv.id).await, Err(ConversationError::NotFound { .. })));
    assert!(matches!(s.delete_conversation(&a, &conv.id).await, Err(ConversationError::NotFound { .. })));
    assert_eq!(count_rows(&db.url, "conversation_items").await, 0, "its items went with it");
}

/// Function call items and their outputs are stored, listed, fetched by id and chained like
/// messages, and keep their kind.
pub async fn function_items_round_trip(db: &TestDb) {
    use ferrogate_core::conversations::wire::{FunctionCallItem, FunctionCallOutputItem, ResponseItem};
    use ferrogate_core::conversations::{Item, ItemBody, Turn};
    let s = &db.store;
    let a = owner("t");
    let conv = create(s, &a, vec![user("weather?")]).await;
    let call = Item::fresh(&ResponseItem::FunctionCall(FunctionCallItem::new("", "call_1", "get_weather", "{}")));
    let result = Item::fresh(&ResponseItem::FunctionCallOutput(FunctionCallOutputItem::new("", "call_1", "18C")));
    let first = Turn {
        conversation: conv.id.clone(),
        expected_version: 0,
        input: vec![user("Paris")],
        output: vec![call.clone()],
        response: Some(response(&a, Some(&conv.id), None, std::slice::from_ref(&call))),
        expires_at_ms: None,
    };
    let stored = first.response.clone().unwrap();
    s.append_turn(&a, first).await.unwrap();
    let second = Turn {
        conversation: conv.id.clone(),
        expected_version: 1,
        input: vec![result.clone()],
        output: vec![assistant("18C in Paris")],
        response: None,
        expires_at_ms: None,
    };
    s.append_turn(&a, second).await.unwrap();
    let (_, items) = s.history(&a, &conv.id, ALL).await.unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!((&items[2], &items[3]), (&call, &result), "both kinds read back whole");
    assert!(matches!(&items[2].body, ItemBody::FunctionCall { name, .. } if name == "get_weather"));
    assert_eq!(s.get_item(&a, &conv.id, &call.id).await.unwrap(), call);
    let got = s.get_response(&a, &stored.id).await.unwrap();
    assert!(matches!(&got.body.output[0], ResponseItem::FunctionCall(c) if c.call_id == "call_1"));
    let chain = s.response_chain(&a, &stored.id, 10).await.unwrap();
    assert_eq!(chain.last(), Some(&call), "a chain carries the call");
}

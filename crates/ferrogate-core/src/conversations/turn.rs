//! Assembling one `POST /v1/responses` turn: what it needs before the model runs ([`plan_turn`])
//! and what to persist once the response is finished ([`settle_turn`]). Pure: the edge performs
//! the store calls the returned [`Persist`] names.
//!
//! Rules: input items get fresh ids (a client's ids are never trusted to be unique); a failed
//! response is never appended to a conversation (the turn did not happen; the client may retry
//! it), but is stored when `store` is true so `GET /v1/responses/{id}` shows the failure; with a
//! conversation, the turn's items are appended whatever `store` says (the conversation is the
//! state the client asked for) and the response is stored with them only when `store` is true.

use ferrogate_protocol::openai::responses::{Response, ResponseItem, ResponseStatus, ResponsesRequest};

use super::ids::{ConversationId, ItemId, ResponseId};
use super::model::{Item, Owner, StoredResponse, Turn};
use super::retention::Retention;

/// What a turn needs before the model runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnPlan {
    /// The response's id, `resp_…`.
    pub response_id: ResponseId,
    /// The id of the assistant message the model's answer becomes.
    pub output_item_id: ItemId,
    /// The request's input as items with fresh ids, in order.
    pub input: Vec<Item>,
    /// The `in_progress` response echoing the request (for `response.created` and as the base
    /// of the final object).
    pub skeleton: Response,
}

impl TurnPlan {
    /// The input as wire items (for [`fit_context`](super::fit_context)'s `input`).
    pub fn input_wire(&self) -> Vec<ResponseItem> {
        self.input.iter().map(Item::to_wire).collect()
    }
}

/// Plans a turn; `created_at_s` is the response's `created_at` (unix seconds).
pub fn plan_turn(req: &ResponsesRequest, created_at_s: u64) -> TurnPlan {
    let response_id = ResponseId::generate();
    let input = req.input_items().iter().map(Item::fresh).collect();
    let skeleton = Response::started(response_id.as_str(), created_at_s, req);
    TurnPlan { response_id, output_item_id: ItemId::generate(), input, skeleton }
}

/// Where the turn's context came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Continues {
    /// A fresh exchange.
    Nothing,
    /// `previous_response_id`.
    Response(ResponseId),
    /// `conversation`, read at this version.
    Conversation(ConversationId, i64),
}

/// The store call a finished turn needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Persist {
    /// `store: false` outside a conversation, or a failed turn that is not stored.
    Nothing,
    /// [`ConversationStore::store_response`](super::ConversationStore::store_response) with these
    /// input items.
    Response(Box<StoredResponse>, Vec<Item>),
    /// [`ConversationStore::append_turn`](super::ConversationStore::append_turn).
    Turn(Box<Turn>),
}

/// What to persist for a finished response `body` (its final status, output and usage).
pub fn settle_turn(
    plan: TurnPlan,
    body: Response,
    owner: &Owner,
    continues: Continues,
    store: bool,
    retention: &Retention,
    now_ms: i64,
) -> Persist {
    let (conversation, previous) = match &continues {
        Continues::Nothing => (None, None),
        Continues::Response(r) => (None, Some(r.clone())),
        Continues::Conversation(c, _) => (Some(c.clone()), None),
    };
    let output: Vec<Item> = body.output.iter().map(Item::from_wire).collect();
    let failed = body.status == ResponseStatus::Failed;
    let stored = store.then(|| StoredResponse {
        id: plan.response_id,
        owner: owner.clone(),
        conversation: conversation.clone(),
        previous,
        created_at_ms: now_ms,
        expires_at_ms: retention.response_expiry(now_ms),
        body,
    });
    match (continues, stored) {
        (Continues::Conversation(id, version), stored) if !failed => Persist::Turn(Box::new(Turn {
            conversation: id,
            expected_version: version,
            input: plan.input,
            output,
            response: stored,
            expires_at_ms: retention.conversation_expiry(now_ms),
        })),
        (_, Some(stored)) => Persist::Response(Box::new(stored), plan.input),
        (_, None) => Persist::Nothing,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use ferrogate_protocol::openai::responses::{ItemRole, MessageItem, Part};
    use serde_json::json;

    use super::*;

    fn req() -> ResponsesRequest {
        serde_json::from_value(json!({"model": "m", "input": [
            {"role": "user", "content": "one"}, {"role": "user", "content": "two", "id": "msg_client"}
        ]}))
        .unwrap()
    }

    fn finished(plan: &TurnPlan, status: ResponseStatus) -> Response {
        let mut body = plan.skeleton.clone();
        body.status = status;
        let item = MessageItem::new(plan.output_item_id.as_str(), ItemRole::Assistant, vec![Part::output_text("ok")]);
        body.output = vec![item.into()];
        body
    }

    #[test]
    fn a_plan_has_fresh_ids_and_an_in_progress_skeleton() {
        let plan = plan_turn(&req(), 7);
        assert_eq!(plan.input.len(), 2);
        assert_ne!(plan.input[1].id.as_str(), "msg_client", "client ids are not reused");
        assert_eq!((plan.skeleton.id.as_str(), plan.skeleton.created_at), (plan.response_id.as_str(), 7));
        assert_eq!(plan.skeleton.status, ResponseStatus::InProgress);
        assert_eq!(plan.input_wire()[0].text(), "one");
    }

    #[test]
    fn a_conversation_turn_appends_input_output_and_response() {
        let (plan, owner, r) = (plan_turn(&req(), 1), Owner::anonymous(), Retention::default());
        let conv = ConversationId::generate();
        let body = finished(&plan, ResponseStatus::Completed);
        let out_id = plan.output_item_id.clone();
        let Persist::Turn(t) =
            settle_turn(plan, body, &owner, Continues::Conversation(conv.clone(), 4), true, &r, 1000)
        else {
            panic!("a turn")
        };
        assert_eq!((t.conversation, t.expected_version, t.input.len()), (conv.clone(), 4, 2));
        assert_eq!(t.output[0].id, out_id, "the output keeps the id the stream announced");
        let stored = t.response.unwrap();
        assert_eq!(stored.conversation, Some(conv));
        assert_eq!(stored.expires_at_ms, r.response_expiry(1000));
        assert_eq!(t.expires_at_ms, r.conversation_expiry(1000));
    }

    #[test]
    fn store_false_and_failures() {
        let (owner, r) = (Owner::anonymous(), Retention::default());
        let plan = plan_turn(&req(), 1);
        let body = finished(&plan, ResponseStatus::Completed);
        assert_eq!(settle_turn(plan, body, &owner, Continues::Nothing, false, &r, 0), Persist::Nothing);

        let plan = plan_turn(&req(), 1);
        let body = finished(&plan, ResponseStatus::Completed);
        let conv = Continues::Conversation(ConversationId::generate(), 0);
        let Persist::Turn(t) = settle_turn(plan, body, &owner, conv.clone(), false, &r, 0) else { panic!("a turn") };
        assert!(t.response.is_none(), "items appended, response not stored");

        let plan = plan_turn(&req(), 1);
        let body = finished(&plan, ResponseStatus::Failed);
        let persist = settle_turn(plan, body, &owner, conv, true, &r, 0);
        assert!(matches!(persist, Persist::Response(..)), "a failed turn is stored, not appended");

        let plan = plan_turn(&req(), 1);
        let prev = ResponseId::generate();
        let body = finished(&plan, ResponseStatus::Completed);
        let Persist::Response(stored, input) =
            settle_turn(plan, body, &owner, Continues::Response(prev.clone()), true, &r, 0)
        else {
            panic!("a response")
        };
        assert_eq!((stored.previous, input.len()), (Some(prev), 2));
    }
}

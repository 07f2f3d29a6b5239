//! Identifiers of conversations (`conv_…`), items (`msg_…`) and stored responses (`resp_…`):
//! a prefix and the 32 hex digits of a UUIDv7 (74 random bits, time-ordered so ids sort by
//! creation). Parsing checks the shape, so a malformed id is a 404 without a database round trip.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal $(, $also:literal)*) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// `s` if it has this kind's shape: the prefix (or another this kind accepts), then
            /// 32 to 64 hex digits.
            pub fn parse(s: &str) -> Option<Self> {
                let hex = [$prefix $(, $also)*].iter().find_map(|p| s.strip_prefix(p))?;
                let ok = (32..=64).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit());
                ok.then(|| Self(s.to_owned()))
            }

            /// An id read back from storage, taken as is.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            /// The id as text, as stored and shown.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

prefixed_id!(
    /// Identifies a conversation.
    ConversationId,
    "conv_"
);
prefixed_id!(
    /// Identifies an item of a conversation or of a response's input or output: a message
    /// (`msg_…`), a function call (`fc_…`) or a function's output (`fco_…`).
    ItemId,
    "msg_",
    "fc_",
    "fco_"
);

impl ItemId {
    /// The prefix of a function call item's id.
    pub const CALL_PREFIX: &'static str = "fc_";
    /// The prefix of a function output item's id.
    pub const OUTPUT_PREFIX: &'static str = "fco_";

    /// A fresh id with `prefix` ([`Self::PREFIX`], [`Self::CALL_PREFIX`] or
    /// [`Self::OUTPUT_PREFIX`]).
    pub fn generate_with(prefix: &'static str) -> Self {
        Self(format!("{prefix}{}", uuid::Uuid::now_v7().simple()))
    }
}
prefixed_id!(
    /// Identifies a stored response.
    ResponseId,
    "resp_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_prefix_and_parse_back() {
        let c = ConversationId::generate();
        assert!(c.as_str().starts_with("conv_") && c.as_str().len() == 5 + 32, "{c}");
        assert_eq!(ConversationId::parse(c.as_str()), Some(c.clone()));
        let r = ResponseId::generate();
        assert!(r.as_str().starts_with("resp_"));
        assert_eq!(ItemId::parse(ItemId::generate().as_str()).map(|i| i.as_str().len()), Some(4 + 32));
        let call = ItemId::generate_with(ItemId::CALL_PREFIX);
        assert_eq!(ItemId::parse(call.as_str()), Some(call));
        assert!(ItemId::parse("fco_0123456789abcdef0123456789abcdef").is_some());
        assert!(ItemId::parse("fcx_0123456789abcdef0123456789abcdef").is_none());
    }

    #[test]
    fn malformed_ids_do_not_parse() {
        assert_eq!(ConversationId::parse("resp_0123456789abcdef0123456789abcdef"), None, "wrong prefix");
        assert_eq!(ConversationId::parse("conv_123"), None, "too short");
        assert_eq!(ConversationId::parse("conv_0123456789abcdef0123456789abcdeg"), None, "not hex");
        assert_eq!(ConversationId::parse("conv_' OR 1=1 --"), None);
        assert!(
            ResponseId::parse("resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b").is_some(),
            "OpenAI's length"
        );
    }

    #[test]
    fn generated_ids_sort_by_creation() {
        let a = ItemId::generate();
        let b = ItemId::generate();
        assert!(a < b);
    }
}

//! What a client may ask of routing through headers: `x-ferrogate-priority: interactive|batch`
//! (its queue class) and `x-ferrogate-tier: small|large` (pins the virtual model's tier, when
//! `tiers.header` allows it). Carried in `RequestCx`; parsed (400 on a bad value) by the
//! pipeline's route stage.

use axum::http::HeaderMap;
use ferrogate_core::queue::Priority;
use ferrogate_core::tier::Tier;

use crate::error::ApiError;

pub const PRIORITY_HEADER: &str = "x-ferrogate-priority";
pub const TIER_HEADER: &str = "x-ferrogate-tier";

#[derive(Debug, Clone, Default)]
pub struct RouteHints {
    priority: Option<String>,
    tier: Option<String>,
}

impl RouteHints {
    pub fn from_headers(h: &HeaderMap) -> Self {
        let get = |name: &str| h.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        Self { priority: get(PRIORITY_HEADER), tier: get(TIER_HEADER) }
    }

    /// The request's queue class; interactive unless the client said batch.
    pub fn priority(&self) -> Result<Priority, ApiError> {
        match &self.priority {
            None => Ok(Priority::Interactive),
            Some(v) => Priority::parse(v).ok_or_else(|| {
                ApiError::invalid(
                    Some(PRIORITY_HEADER.into()),
                    format!("{PRIORITY_HEADER} must be 'interactive' or 'batch' (got '{}')", clip(v)),
                )
            }),
        }
    }

    pub fn tier(&self) -> Result<Option<Tier>, ApiError> {
        match &self.tier {
            None => Ok(None),
            Some(v) => Tier::parse(v).map(Some).ok_or_else(|| {
                ApiError::invalid(
                    Some(TIER_HEADER.into()),
                    format!("{TIER_HEADER} must be 'small' or 'large' (got '{}')", clip(v)),
                )
            }),
        }
    }
}

/// A client value echoed in an error, bounded.
fn clip(v: &str) -> String {
    v.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_parse_and_bad_values_name_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(RouteHints::from_headers(&h).priority().unwrap(), Priority::Interactive);
        h.insert(PRIORITY_HEADER, "Batch".parse().unwrap());
        h.insert(TIER_HEADER, "large".parse().unwrap());
        let r = RouteHints::from_headers(&h);
        assert_eq!((r.priority().unwrap(), r.tier().unwrap()), (Priority::Batch, Some(Tier::Large)));
        h.insert(PRIORITY_HEADER, "urgent".parse().unwrap());
        let e = RouteHints::from_headers(&h).priority().unwrap_err();
        assert_eq!((e.status().as_u16(), e.param.as_deref()), (400, Some(PRIORITY_HEADER)));
    }
}

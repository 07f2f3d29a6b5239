//! The request's `Cache-Control` header, as far as the response cache reads it.
//!
//! `no-store`: neither read nor fill the cache. `no-cache`: do not answer from the cache (the
//! answer is computed), but the fresh answer may fill it. Directive names are case-insensitive;
//! unknown directives and arguments are ignored, as HTTP caches do.

/// What the header asks of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`.
    pub no_cache: bool,
}

impl CacheControl {
    /// Parses one or more header values (`Cache-Control` may repeat; pass each).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut cc = CacheControl::default();
        for directive in values.into_iter().flat_map(|v| v.split(',')) {
            let name = directive.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("no-store") {
                cc.no_store = true;
            } else if name.eq_ignore_ascii_case("no-cache") {
                cc.no_cache = true;
            }
        }
        cc
    }

    /// May the answer come from the cache?
    pub fn may_read(&self) -> bool {
        !self.no_store && !self.no_cache
    }

    /// May the fresh answer be stored?
    pub fn may_write(&self) -> bool {
        !self.no_store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_are_found_in_any_case_and_position() {
        let cc = CacheControl::parse(["max-age=0, No-Cache"]);
        assert_eq!((cc.no_cache, cc.no_store, cc.may_read(), cc.may_write()), (true, false, false, true));
        let cc = CacheControl::parse(["private", "no-store"]);
        assert_eq!((cc.may_read(), cc.may_write()), (false, false));
        let cc = CacheControl::parse(["no-cache=\"set-cookie\""]);
        assert!(cc.no_cache, "an argument does not hide the directive");
    }

    #[test]
    fn absent_or_unrelated_headers_allow_both() {
        for values in [vec![], vec![""], vec!["max-age=60, must-revalidate"], vec!["no-cachex"]] {
            let cc = CacheControl::parse(values.clone());
            assert!(cc.may_read() && cc.may_write(), "{values:?}");
        }
    }
}

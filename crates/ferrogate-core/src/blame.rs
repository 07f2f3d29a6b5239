//! Who is at fault for a failure (pingora's blame): the bottom floor that backend and gateway
//! errors both name.

/// Who is at fault: decides logging level and whether a backend's health suffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Caller,
    Upstream,
    Gateway,
}

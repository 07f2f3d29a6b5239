//! ferrogate-protocol

//! ferrogate-backends

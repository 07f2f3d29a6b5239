//! ferrogate-core

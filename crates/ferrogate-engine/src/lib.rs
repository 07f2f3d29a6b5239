//! ferrogate-engine

//! ferrogate-testkit

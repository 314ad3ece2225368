//! risk-core

//! Benchmarks live in `benches/`; this library only shares fixtures between them.

//! Open-loop load generator (filled by the loadtest issue).

//! Errors at the edge (being written).

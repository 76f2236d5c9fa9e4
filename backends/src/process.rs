//! Spawning external tools: one place, with deadlines and no shell (stub).

//! The catalog's data model, shared by both planes: plain data and its validation, no I/O.

pub mod rule;

//! A statement as the router reads it: its text, and the words its cheap tests look for
//! (`SAVEPOINT`, `TEMP`, `PREPARE`, `RESET`, …), found in one pass when it arrives and shared
//! by every test (the relay's, the router's, the holds'), each of which scanned the text
//! for its own words before.

use crate::rewriter::word_scan::Words;

#[derive(Debug, Clone, Copy)]
pub struct Statement<'a> {
    pub sql: &'a str,
    pub words: Words,
}

impl<'a> Statement<'a> {
    /// `sql` and its words: one pass.
    pub fn new(sql: &'a str) -> Self {
        Statement {
            sql,
            words: Words::in_text(sql.as_bytes()),
        }
    }
}

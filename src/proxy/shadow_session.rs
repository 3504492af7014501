//! `ShadowSession`, what one session remembers for shadow reads besides its routing: the
//! statements it prepared that look like reads (text, declared parameter types, and the
//! version each was rewritten at, which it keeps for its life), so that a later Bind of one of
//! them can be copied with its parameters; the client's `search_path`
//! (`router::search_path`); and the role it logged in as, which the shadow's re-run takes so
//! that it has the client's rights and never the catalog user's. Named statements are remembered whether or not a run is in progress
//! (drivers prepare once and bind for hours), up to [`MAX_REMEMBERED_SQL_BYTES`] of text per
//! session; the unnamed statement only while a run is, since it is parsed again before each
//! use.

use std::collections::HashMap;
use std::sync::Arc;

use crate::rewriter::lexer::Token;
use crate::rewriter::shape;
use crate::router::search_path::{self, SearchPathChange};

/// Statement text a session remembers for shadow reads; statements past it are not shadowed.
pub const MAX_REMEMBERED_SQL_BYTES: usize = 256 * 1024;

/// A prepared statement that looks like a read.
#[derive(Debug, Clone)]
pub struct PreparedRead {
    pub sql: Arc<str>,
    /// The parameter types the client declared in its Parse (0: left to the server).
    pub parameter_types: Arc<[u32]>,
    /// The version the statement was rewritten at.
    pub version: Arc<str>,
}

#[derive(Debug, Default)]
pub struct ShadowSession {
    named: HashMap<String, PreparedRead>,
    named_bytes: usize,
    unnamed: Option<PreparedRead>,
    /// `None`: the server's default (nothing set, or reset).
    search_path: Option<Arc<str>>,
    /// The login role (the startup packet's `user`, which Postgres authenticated: logins are
    /// relayed). A `SET ROLE` inside the session is not followed: the client can undo it
    /// with `RESET ROLE`, so its login role bounds its rights.
    role: Arc<str>,
    /// Reused by the statement scans.
    tokens: Vec<Token>,
}

impl ShadowSession {
    /// A session whose startup packet set `search_path` (or not).
    pub fn new(startup_params: &[(String, String)]) -> Self {
        ShadowSession {
            search_path: search_path::from_startup(startup_params).map(Arc::from),
            role: startup_params
                .iter()
                .find(|(name, _)| name == "user")
                .map(|(_, user)| Arc::from(user.as_str()))
                .unwrap_or_default(),
            ..ShadowSession::default()
        }
    }

    pub fn search_path(&self) -> Option<&Arc<str>> {
        self.search_path.as_ref()
    }

    /// The role the session logged in as.
    pub fn role(&self) -> &Arc<str> {
        &self.role
    }

    /// A simple Query's text: follows what it does to the search_path.
    pub fn query(&mut self, sql: &str) {
        match search_path::change(sql, &mut self.tokens) {
            Some(SearchPathChange::Set(value)) => self.search_path = Some(Arc::from(value)),
            Some(SearchPathChange::Reset) => self.search_path = None,
            None => {}
        }
    }

    /// The statement's shape as people read it (`rewriter::shape::readable`).
    pub fn readable_shape(&mut self, sql: &str) -> Option<String> {
        shape::readable(sql, &mut self.tokens)
    }

    /// A Parse of statement `name`: remembered when `read` is `Some` (else any earlier
    /// statement of that name is forgotten).
    pub fn parsed(&mut self, name: &str, read: Option<PreparedRead>) {
        if name.is_empty() {
            self.unnamed = read;
            return;
        }
        self.closed(name);
        if let Some(read) = read
            && self.named_bytes + read.sql.len() <= MAX_REMEMBERED_SQL_BYTES
        {
            self.named_bytes += read.sql.len();
            self.named.insert(name.to_owned(), read);
        }
    }

    /// A Close of statement `name`.
    pub fn closed(&mut self, name: &str) {
        if let Some(gone) = self.named.remove(name) {
            self.named_bytes -= gone.sql.len();
        }
    }

    /// The statement a Bind names, if remembered.
    pub fn statement(&self, name: &str) -> Option<&PreparedRead> {
        if name.is_empty() {
            self.unnamed.as_ref()
        } else {
            self.named.get(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(sql: &str) -> PreparedRead {
        PreparedRead {
            sql: Arc::from(sql),
            parameter_types: Arc::from(vec![23u32]),
            version: Arc::from("v1"),
        }
    }

    #[test]
    fn remembers_within_its_bound() {
        let mut session = ShadowSession::new(&[
            ("user".into(), "App \"1\"".into()),
            ("search_path".into(), "app".into()),
        ]);
        assert_eq!(&**session.role(), "App \"1\"");
        assert_eq!(session.search_path().map(|p| &**p), Some("app"));
        session.query("SET search_path TO other");
        assert_eq!(session.search_path().map(|p| &**p), Some("\"other\""));
        session.query("RESET search_path");
        assert_eq!(session.search_path(), None);

        session.parsed("s1", Some(read("SELECT $1")));
        session.parsed("", Some(read("SELECT 2")));
        assert_eq!(&*session.statement("s1").unwrap().sql, "SELECT $1");
        assert_eq!(&*session.statement("").unwrap().sql, "SELECT 2");
        session.closed("s1");
        assert!(session.statement("s1").is_none());
        assert_eq!(session.named_bytes, 0);

        let big = "x".repeat(MAX_REMEMBERED_SQL_BYTES / 2 + 1);
        session.parsed("a", Some(read(&big)));
        session.parsed("b", Some(read(&big)));
        assert!(session.statement("a").is_some() && session.statement("b").is_none());
        session.parsed("a", None);
        assert!(session.statement("a").is_none());
        assert_eq!(session.named_bytes, 0);
    }
}

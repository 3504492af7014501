//! Which schema version each session runs at, and what its statements become.
//!
//! `state` is the routing state built from the catalog and swapped atomically; `watcher` keeps
//! it in step with the catalog (LISTEN/NOTIFY); `session_router` resolves one session's version
//! and rewrites its statements with the `rewriter`; `version_command` recognises
//! `SET/RESET/SHOW viewgate.version`; `version_setting` is the statement that keeps
//! it set upstream, the version name hex-encoded; `raise` turns refusals into errors Postgres reports;
//! `rules` compiles and matches routing rules; `resolve` decides, with a reason, which version
//! a session gets; `prepared` remembers which version each prepared statement was rewritten
//! at; `search_path` reads what statements do to the search_path and `session_search_path`
//! follows a session's, so unqualified names resolve as Postgres would resolve them;
//! `savepoints` follows a block's savepoints, so `ROLLBACK TO` puts settings back;
//! `temporary_relations` follows the session's own temporary tables named like a managed
//! one, which Postgres searches first; `statement_words` splits a query string into the
//! words those readers look at; `function_call` decides which FunctionCall messages a
//! versioned session may send (large-object functions only); `server_version` what may
//! move the server's `viewgate.version` away from the version told it, and when a session
//! may send it; `explain_execute` sends sqlx's nullability EXPLAIN to the version's plan
//! outline. The routing map comes from the catalog through `catalog_read`.

pub mod explain_execute;
pub mod function_call;
pub mod holding_commands;
pub mod prepared;
pub mod raise;
pub mod relation_kind_restriction;
pub mod resolve;
pub mod rules;
pub mod savepoints;
pub mod search_path;
pub mod server_version;
pub mod session_router;
pub mod session_search_path;
pub mod state;
pub mod statement;
pub mod statement_words;
pub mod temporary_relations;
pub mod version_command;
pub mod version_setting;
pub mod view_name_capture;
pub mod watcher;

pub use raise::{ConformingStrings, REFUSED_STATEMENT, Refusal};
pub use rules::{Assignment, ClientIdentity, Reason};
pub use session_router::{Routed, SessionRouter};
pub use state::{RoutingState, SharedRouting};

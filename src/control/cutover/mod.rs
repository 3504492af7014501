//! Cutovers: [`default_version`] flips the version sessions get by default (and rolls it back),
//! optionally watched by a [`guard`] that rolls it back by itself;
//! [`upstream`] moves every proxy's sessions to another Postgres server through their admin
//! APIs (`viewgate pause|resume|cutover --upstream`).

pub mod default_version;
pub mod guard;
pub mod upstream;

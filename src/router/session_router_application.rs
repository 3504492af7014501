//! A session's application_name set after its startup. pgJDBC sends the URL's `ApplicationName`
//! as `SET application_name` once connected (unless `assumeMinServerVersion` is 9.0 or later),
//! and so does a pool's init SQL: routing rules matching the application never saw the name
//! (the Java walk: `billing-svc` ran at the default version, not at its rule's), and a split
//! hashing it put every such client in one bucket. The name Postgres reports (ParameterStatus,
//! sent whenever it changes, a `SET` rolled back included) is what rules match from then on:
//! the session picks its version again at its next transaction boundary, as it does when the
//! rules change.

use super::SessionRouter;
use crate::config::StickyField;

impl SessionRouter {
    /// The session's application_name is now `name`, as Postgres reported it; `sticky_identity`
    /// picks what a weighted split hashes.
    pub fn renamed(&mut self, name: &str, sticky_identity: &[StickyField]) {
        if self.client.application_name == name {
            return;
        }
        self.client.application_name = name.to_owned();
        self.bucket = self.client.bucket(sticky_identity);
        self.resolved_under = None;
        self.relabelled_under = None;
    }
}

//! Passwords for the proxy's own logins, from a file in libpq's pgpass format.
//!
//! Normally the proxy never authenticates: it relays the client's login and never sees a
//! reusable secret. Moving a live session to another upstream (`reconnect.rs`) needs a login
//! of the proxy's own, so `upstream_passfile` names a file of
//! `hostname:port:database:username:password` lines, as libpq reads `~/.pgpass`: `*` matches
//! anything, `\:` and `\\` escape, `#` starts a comment line, and the first matching line wins.
//! The file is read at each lookup, so it can be updated without restarting the proxy.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PassfileError {
    #[error("cannot read upstream_passfile {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// What a login is for: the fields a pgpass line is matched on.
pub struct LoginTarget<'a> {
    /// The host name, or for a Unix socket its directory (`localhost` matches it too).
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password of the first line matching `target`, if any.
pub fn lookup(path: &Path, target: &LoginTarget<'_>) -> Result<Option<String>, PassfileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PassfileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(find(&text, target))
}

fn find(text: &str, target: &LoginTarget<'_>) -> Option<String> {
    let port = target.port.to_string();
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(fields)
        .find(|fields| {
            let host_matches = matches(&fields[0], target.host)
                || (target.host.starts_with('/') && matches(&fields[0], "localhost"));
            host_matches
                && matches(&fields[1], &port)
                && matches(&fields[2], target.database)
                && matches(&fields[3], target.user)
        })
        .map(|mut fields| fields.swap_remove(4))
}

fn matches(field: &str, value: &str) -> bool {
    field == "*" || field == value
}

/// The five fields of a line, unescaped; `None` for lines with fewer. A password may contain
/// unescaped colons (libpq takes the rest of the line).
fn fields(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::with_capacity(5);
    let mut current = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    fields.push(current);
    (fields.len() == 5).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(host: &'a str, user: &'a str) -> LoginTarget<'a> {
        LoginTarget {
            host,
            port: 5432,
            database: "app",
            user,
        }
    }

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    db1:5432:app:alice:first\n\
                    *:5432:*:alice:second\n\
                    *:*:*:bob:p\\:w\\\\d:tail\n\
                    short:line\n\
                    localhost:5432:app:carol:socket\n";
        assert_eq!(
            find(text, &target("db1", "alice")).as_deref(),
            Some("first")
        );
        assert_eq!(
            find(text, &target("db2", "alice")).as_deref(),
            Some("second")
        );
        assert_eq!(
            find(text, &target("x", "bob")).as_deref(),
            Some("p:w\\d:tail")
        );
        assert_eq!(
            find(text, &target("/run/pg", "carol")).as_deref(),
            Some("socket")
        );
        assert_eq!(find(text, &target("db1", "dave")), None);
    }
}

//! One privilege as `aclexplode` gives it, and the `GRANT` that gives it again. Whatever
//! viewgate remakes or replaces (a column at the contract, a sequence that cannot change
//! hands, a view `views apply` or the contract makes anew) would otherwise lose the grants an
//! operator made on it, and a role granted only that object would get `permission denied`.

use crate::control::quote::quote_ident;

/// One privilege on a relation, a column or a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privilege {
    /// `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `REFERENCES`, `USAGE`, …
    kind: String,
    /// None for PUBLIC.
    grantee: Option<String>,
    grantable: bool,
}

impl Privilege {
    pub fn new(kind: String, grantee: Option<String>, grantable: bool) -> Self {
        Privilege {
            kind,
            grantee,
            grantable,
        }
    }

    /// The privileges of `aclexplode`'s columns, aggregated in one order.
    pub fn all(
        kinds: Vec<String>,
        grantees: Vec<Option<String>>,
        grantable: Vec<bool>,
    ) -> Vec<Privilege> {
        kinds
            .into_iter()
            .zip(grantees)
            .zip(grantable)
            .map(|((kind, grantee), grantable)| Privilege::new(kind, grantee, grantable))
            .collect()
    }

    /// The `GRANT` of this privilege on `object` (` (column) ON TABLE t`, ` ON SEQUENCE s`),
    /// and what it gives to whom; none for a kind that is not a plain keyword.
    pub fn grant(&self, object: &str) -> Option<(String, String)> {
        // aclexplode names the privileges in capitals, from a fixed set.
        let kind = &self.kind;
        if kind.is_empty() || !kind.bytes().all(|byte| byte.is_ascii_uppercase()) {
            return None;
        }
        let grantee = self
            .grantee
            .as_deref()
            .map_or_else(|| "PUBLIC".to_owned(), quote_ident);
        let option = if self.grantable {
            " WITH GRANT OPTION"
        } else {
            ""
        };
        Some((
            format!("{kind} to {grantee}"),
            format!("GRANT {kind}{object} TO {grantee}{option}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_quotes_its_grantee_and_keeps_its_option() {
        let privilege = Privilege::new("SELECT".into(), Some("App \"x\"".into()), true);
        assert_eq!(
            privilege.grant(" ON TABLE \"public\".\"v\""),
            Some((
                "SELECT to \"App \"\"x\"\"\"".to_owned(),
                "GRANT SELECT ON TABLE \"public\".\"v\" TO \"App \"\"x\"\"\" WITH GRANT OPTION"
                    .to_owned()
            ))
        );
        assert_eq!(
            Privilege::new("UPDATE".into(), None, false).grant(" (\"c\") ON TABLE t"),
            Some((
                "UPDATE to PUBLIC".to_owned(),
                "GRANT UPDATE (\"c\") ON TABLE t TO PUBLIC".to_owned()
            ))
        );
    }

    #[test]
    fn a_kind_that_is_not_a_keyword_is_not_granted() {
        for kind in ["", "SELECT; DROP TABLE t", "select"] {
            assert_eq!(
                Privilege::new(kind.into(), None, false).grant(" ON t"),
                None
            );
        }
    }
}

//! The rewriter against PostgreSQL's own parser, over generated statements.
//!
//! Statements are generated from a grammar of the forms applications send (SELECT with joins,
//! subqueries, LATERAL, set operations, `TABLE`, WITH items that shadow the table or not,
//! INSERT … SELECT and ON CONFLICT, UPDATE … FROM, DELETE … USING, MERGE, COPY, EXPLAIN,
//! `SELECT … INTO`, locking clauses, `ROWS FROM`, the table's row type in casts), with the
//! managed table written in every way (bare, upper case, quoted, qualified, under an alias)
//! beside look-alikes (another
//! schema's table of the same name, longer names, strings, comments, column qualifiers, an
//! alias named like the table). libpg_query is the oracle:
//!
//! - the references the rewriter changes are exactly the ones Postgres reads as the managed
//!   table: the rewritten text names the view once for each of them and the table nowhere;
//! - a statement is refused only with a position, and never forwarded unchanged while
//!   Postgres reads a managed table in it;
//! - where sqlparser reads the statement, its own relation edits sit exactly at Postgres's
//!   references (the differential between the two parsers, before the check reconciles them).

use std::collections::BTreeSet;

use proptest::prelude::*;
use viewgate::rewriter::postgres_grammar::{Reading, managed_references};
use viewgate::rewriter::rewrite::read_with_sqlparser;
use viewgate::rewriter::{RelationName, Rewrite, VersionTargets, ViewTarget, rewrite};

const VIEW: &str = "model_metadata_v2";

fn v2() -> VersionTargets {
    VersionTargets::new(
        "v2",
        vec![ViewTarget {
            table: RelationName::new("public", "model_metadata"),
            view: RelationName::new("public", VIEW),
        }],
    )
}

/// The view as if it were managed, to count the references to it in rewritten text.
fn view_as_managed() -> VersionTargets {
    VersionTargets::new(
        "count",
        vec![ViewTarget {
            table: RelationName::new("public", VIEW),
            view: RelationName::new("public", "unused"),
        }],
    )
}

fn references(sql: &str, targets: &VersionTargets) -> Vec<usize> {
    match managed_references(sql, targets) {
        Reading::Parsed(found) => found.into_iter().map(|r| r.offset).collect(),
        other => panic!("Postgres's parser does not read {sql:?}: {other:?}"),
    }
}

/// A tiny deterministic generator driven by proptest's seeds.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, options: &[&'a str]) -> &'a str {
        options[self.below(options.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    /// A relation name: the managed table in some spelling, or a look-alike.
    fn name(&mut self) -> String {
        self.pick(&[
            "model_metadata",
            "MODEL_METADATA",
            "Model_Metadata",
            "\"model_metadata\"",
            "public.model_metadata",
            "\"public\".\"model_metadata\"",
            "PUBLIC . model_metadata",
            "other.model_metadata",
            "\"Model_Metadata\"",
            "model_metadata_archive",
            "deployments",
            "pg_catalog.pg_class",
        ])
        .to_owned()
    }

    fn alias(&mut self) -> &'static str {
        self.pick(&["", "", " m", " AS m", " AS model_metadata", " AS \"MM\""])
    }

    fn gap(&mut self) -> &'static str {
        self.pick(&[
            " ",
            " ",
            "\n",
            " /* FROM model_metadata */ ",
            " -- model_metadata\n",
        ])
    }

    fn predicate(&mut self, depth: usize) -> String {
        let leaves = [
            "id = 1",
            "model_name = 'model_metadata'",
            "model_metadata.id = 2",
            "hyperparameters ->> 'k' = 'v'",
            "id = ANY($1)",
        ];
        if depth == 0 {
            return self.pick(&leaves).to_owned();
        }
        match self.below(5) {
            3 => {
                let array = if self.chance(30) { "[]" } else { "" };
                format!("(NULL::{}{array}) IS NULL", self.name())
            }
            0 => format!(
                "EXISTS (SELECT 1 FROM {})",
                self.table_expression(depth - 1)
            ),
            1 => format!("id IN ({})", self.query(depth - 1)),
            2 => format!(
                "({} OR {})",
                self.predicate(depth - 1),
                self.predicate(depth - 1)
            ),
            _ => self.pick(&leaves).to_owned(),
        }
    }

    fn table_expression(&mut self, depth: usize) -> String {
        let choice = if depth == 0 { 0 } else { self.below(8) };
        match choice {
            6 => format!("{}, {}", self.table(), self.table_expression(depth - 1)),
            1 => format!("({}) s", self.query(depth - 1)),
            2 => format!("LATERAL ({}) l", self.query(depth - 1)),
            3 => "ROWS FROM (generate_series(1, 2)) AS g".to_owned(),
            4 => "generate_series(1, 2) AS model_metadata".to_owned(),
            5 => {
                let right = if self.chance(50) {
                    self.table()
                } else {
                    format!("({}) j", self.query(depth - 1))
                };
                format!("{} JOIN {right} ON true", self.table())
            }
            _ => self.table(),
        }
    }

    fn table(&mut self) -> String {
        let only = if self.chance(15) { "ONLY " } else { "" };
        format!("{only}{}{}", self.name(), self.alias())
    }

    fn query(&mut self, depth: usize) -> String {
        let columns = self.pick(&[
            "*",
            "id",
            "count(*)",
            "model_metadata.*",
            "'model_metadata'",
        ]);
        let mut sql = format!(
            "SELECT {columns} FROM{}{}",
            self.gap(),
            self.table_expression(depth)
        );
        if self.chance(40) {
            sql.push_str(&format!(" WHERE {}", self.predicate(depth)));
        }
        if depth > 0 && self.chance(20) {
            let op = self.pick(&["UNION", "UNION ALL", "EXCEPT", "INTERSECT"]);
            let right = if self.chance(30) {
                format!("TABLE {}", self.name())
            } else {
                self.query(depth - 1)
            };
            sql = format!("{sql} {op} {right}");
        }
        sql
    }

    fn with(&mut self, depth: usize) -> String {
        let recursive = if self.chance(20) { "RECURSIVE " } else { "" };
        let name = self.pick(&["model_metadata", "c", "\"model_metadata\""]);
        format!("WITH {recursive}{name} AS ({}) ", self.query(depth))
    }

    fn statement(&mut self) -> String {
        let depth = 2;
        let with = if self.chance(30) {
            self.with(depth - 1)
        } else {
            String::new()
        };
        let target = self.name();
        let body = match self.below(12) {
            0 => format!(
                "INSERT INTO {target}{} (model_name) {} RETURNING id",
                self.pick(&["", " AS m"]),
                if self.chance(50) {
                    "VALUES ('x')".to_owned()
                } else {
                    self.query(depth - 1)
                }
            ),
            1 => format!(
                "INSERT INTO {target} (model_name) VALUES ('x') ON CONFLICT (model_name) DO UPDATE SET model_name = EXCLUDED.model_name"
            ),
            2 => format!(
                "UPDATE {target}{} SET model_name = 'x' FROM {} WHERE {}",
                self.alias(),
                self.table_expression(depth - 1),
                self.predicate(1)
            ),
            3 => format!(
                "DELETE FROM {target}{} USING {} WHERE {}",
                self.alias(),
                self.table_expression(depth - 1),
                self.predicate(1)
            ),
            4 => format!(
                "MERGE INTO {target}{} USING {} ON true WHEN MATCHED THEN DO NOTHING",
                self.pick(&["", " m"]),
                // One table reference (joins allowed), not a list.
                if self.chance(50) {
                    self.table()
                } else {
                    format!("({}) s", self.query(depth - 1))
                }
            ),
            5 if with.is_empty() => format!(
                "COPY {target}{} {}",
                self.pick(&["", " (id, model_name)"]),
                // The last: a COPY … TO sqlparser cannot read, which must be refused.
                self.pick(&[
                    "TO STDOUT",
                    "FROM STDIN",
                    "TO STDOUT (FORMAT csv)",
                    "TO STDOUT (FORMAT csv, FORCE_QUOTE *)",
                ])
            ),
            6 if with.is_empty() => format!("TABLE {}{target}", self.pick(&["", "ONLY "])),
            7 => format!(
                "{} FOR UPDATE OF {}",
                self.query(0),
                self.pick(&["model_metadata", "m"])
            ),
            8 => format!(
                "SELECT * INTO model_metadata_copy FROM {}",
                self.table_expression(1)
            ),
            9 if with.is_empty() => format!("EXPLAIN {}", self.query(depth)),
            _ => self.query(depth),
        };
        let trail = self.pick(&["", ";", "; SELECT 1"]);
        format!("{with}{body}{trail}")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_rewriter_changes_exactly_what_postgres_reads_as_the_table(seed in any::<u64>()) {
        let sql = Gen(seed | 1).statement();
        let expected = references(&sql, &v2());
        match rewrite(&sql, &v2()) {
            Ok(Rewrite::Rewritten(output)) => {
                prop_assert_eq!(
                    references(&output, &v2()),
                    Vec::<usize>::new(),
                    "the table is still read in {:?} (from {:?})",
                    output,
                    sql
                );
                prop_assert_eq!(
                    references(&output, &view_as_managed()).len(),
                    expected.len(),
                    "{:?} -> {:?}",
                    sql,
                    output
                );
            }
            Ok(Rewrite::Unchanged) => prop_assert!(
                expected.is_empty(),
                "forwarded unchanged while Postgres reads the table at {:?}: {:?}",
                expected,
                sql
            ),
            Err(error) => prop_assert!(error.position.is_some(), "{:?}: {}", sql, error),
        }
    }

    #[test]
    fn sqlparser_edits_where_postgres_reads_the_table(seed in any::<u64>()) {
        let sql = Gen(seed | 1).statement();
        let reading = read_with_sqlparser(&sql, &v2());
        // Statements sqlparser cannot read, and `TABLE t` in a set operation (which it reads
        // as no table at all), are left to Postgres's positions.
        prop_assume!(reading.failure.is_none());
        prop_assume!(!sql.contains("UNION TABLE") && !sql.contains("ALL TABLE")
            && !sql.contains("EXCEPT TABLE") && !sql.contains("INTERSECT TABLE"));
        let sqlparser: BTreeSet<usize> = reading
            .edits
            .iter()
            .filter(|e| e.relation)
            .map(|e| e.range.start)
            .collect();
        let postgres: BTreeSet<usize> = references(&sql, &v2()).into_iter().collect();
        prop_assert_eq!(sqlparser, postgres, "{:?}", sql);
    }
}

#[test]
fn the_generator_reaches_every_outcome() {
    let (mut rewritten, mut unchanged, mut refused, mut unreadable) = (0, 0, 0, 0);
    for seed in 1..2_000u64 {
        let sql = Gen(seed * 2 + 1).statement();
        match rewrite(&sql, &v2()) {
            Ok(Rewrite::Rewritten(_)) => rewritten += 1,
            Ok(Rewrite::Unchanged) => unchanged += 1,
            Err(_) => refused += 1,
        }
        if read_with_sqlparser(&sql, &v2()).failure.is_some() {
            unreadable += 1;
        }
    }
    assert!(
        rewritten > 1_000 && unchanged > 20 && refused > 0 && unreadable > 100,
        "rewritten {rewritten}, unchanged {unchanged}, refused {refused}, unreadable by sqlparser {unreadable}"
    );
}

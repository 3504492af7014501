//! MERGE at versions with a recorded mapping, over generated statements: the seed example's
//! v1 (auto-updatable) and v2 (trigger-backed), with the mappings `views apply` records for
//! them (`tests/merge/*.json`, copied from a catalog). PostgreSQL's parser is the oracle, as in
//! `tests/rewrite_differential.rs`:
//!
//! - a MERGE is rewritten or refused, never forwarded unchanged, and never panics;
//! - rewritten, Postgres's parser reads it, and the managed table is named exactly once: as
//!   the MERGE's target (the base table); every other reference the client made to it now
//!   names the version's view (and the view's row type appears only as the rewriter's own
//!   `ROW(…)::<view>`, a write function's argument);
//! - a refusal has a position;
//! - through the shape cache, statements that differ only in their constants are rewritten
//!   exactly as the full path rewrites each (edits never copy the client's constants).

use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use viewgate::model::ViewMapping;
use viewgate::model::view_mapping::MAPPING_FUNCTION_INFIX;
use viewgate::rewriter::postgres_grammar::{Place, Reading, managed_references};
use viewgate::rewriter::targets::BaseWrite;
use viewgate::rewriter::{
    RelationName, Rewrite, RewriteCache, VersionTargets, ViewTarget, rewrite, rewrite_cached,
};

/// One cache for every case of a run, so that statements of different shapes meet in it.
static SHARED: LazyLock<RewriteCache> = LazyLock::new(RewriteCache::default);

fn mapped(version: &str, mapping: &str) -> VersionTargets {
    let view = RelationName::new("public", format!("model_metadata_{version}"));
    VersionTargets::new(
        version,
        vec![ViewTarget {
            table: RelationName::new("public", "model_metadata"),
            view: view.clone(),
        }],
    )
    .with_base_write(
        view,
        BaseWrite {
            base: RelationName::new("public", "model_metadata"),
            mapping: Arc::new(serde_json::from_str::<ViewMapping>(mapping).unwrap()),
        },
    )
}

fn versions() -> [VersionTargets; 2] {
    [
        mapped("v1", include_str!("merge/v1_mapping.json")),
        mapped("v2", include_str!("merge/v2_mapping.json")),
    ]
}

/// The views, as if they were managed, to count the references to them.
fn views_as_managed() -> VersionTargets {
    VersionTargets::new(
        "count",
        ["v1", "v2"]
            .iter()
            .map(|v| ViewTarget {
                table: RelationName::new("public", format!("model_metadata_{v}")),
                view: RelationName::new("public", "unused"),
            })
            .collect(),
    )
}

fn references(sql: &str, targets: &VersionTargets) -> Vec<(usize, Place)> {
    match managed_references(sql, targets) {
        // A mapping function is the rewriter's own call in its output (a client naming one is
        // refused); the generator never writes one.
        Reading::Parsed(found) => found
            .into_iter()
            .filter(|r| {
                !(r.place == Place::OtherVersion && r.name.contains(MAPPING_FUNCTION_INFIX))
            })
            .map(|r| (r.offset, r.place))
            .collect(),
        other => panic!("Postgres's parser does not read {sql:?}: {other:?}"),
    }
}

/// Constants a hole may hold: each variant of a statement fills every hole with one.
const CONSTANTS: [&str; 5] = ["'a'", "'it''s'", "$$x -- y$$", "'/* z'", "'model_metadata'"];

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

    /// A MERGE template; `{c}` marks a constant.
    fn merge(&mut self) -> String {
        let (target, bare) = *[
            ("model_metadata", "model_metadata"),
            ("MODEL_METADATA", "MODEL_METADATA"),
            ("\"model_metadata\"", "\"model_metadata\""),
            ("public.model_metadata", "model_metadata"),
            ("\"public\".\"model_metadata\"", "\"model_metadata\""),
        ]
        .get(self.below(5))
        .unwrap_or(&("model_metadata", "model_metadata"));
        let (alias, row) = match self.below(4) {
            0 => (String::new(), bare.to_owned()),
            1 => (" t".to_owned(), "t".to_owned()),
            2 => (" AS t".to_owned(), "t".to_owned()),
            _ => (" AS \"T\"".to_owned(), "\"T\"".to_owned()),
        };
        let source = self
            .pick(&[
                "(VALUES (1, {c}), (90, {c})) AS s (id, v)",
                "(SELECT 2 AS id, {c} AS v) s",
                "(SELECT id, model_name AS v FROM model_metadata WHERE model_version <> {c}) s",
                "(SELECT model_id AS id, env AS v FROM deployments) AS s",
                "deployments s",
                "model_metadata s",
            ])
            .to_owned();
        let on = self
            .pick(&[
                "{row}.id = s.id",
                "s.id = {row}.id AND {row}.model_name <> {c}",
                "id = s.id",
                "{row}.model_type = {c}",
                "{row}.model_version = s.v",
            ])
            .to_owned();
        let mut clauses = Vec::new();
        for _ in 0..1 + self.below(3) {
            let condition = self.pick(&[
                "",
                "",
                " AND {row}.model_type = {c}",
                " AND {row}.model_version > {c}",
                " AND s.id > 1",
                " AND model_name <> {c}",
            ]);
            let clause = match self.below(8) {
                0 => format!(
                    "WHEN MATCHED{condition} THEN UPDATE SET model_name = {{c}}{}",
                    self.pick(&[
                        "",
                        ", model_version = {row}.model_version || {c}",
                        ", model_type = {c}",
                        ", hyperparameters = DEFAULT",
                    ])
                ),
                1 => format!(
                    "WHEN MATCHED{condition} THEN UPDATE SET model_type = upper({{row}}.model_name)"
                ),
                2 => format!("WHEN MATCHED{condition} THEN DELETE"),
                3 => "WHEN MATCHED THEN DO NOTHING".to_owned(),
                4 => "WHEN NOT MATCHED THEN INSERT (id, model_name, model_version) VALUES (s.id, {c}, {c})".to_owned(),
                5 => "WHEN NOT MATCHED THEN INSERT VALUES (s.id, {c}, DEFAULT)".to_owned(),
                6 => "WHEN NOT MATCHED THEN INSERT DEFAULT VALUES".to_owned(),
                _ => "WHEN NOT MATCHED THEN INSERT (model_type, model_name, model_version) VALUES (upper({c}), {c}, {c})".to_owned(),
            };
            clauses.push(clause);
        }
        let tail = if self.chance(5) { " RETURNING *" } else { "" };
        format!(
            "MERGE INTO {target}{alias} USING {source} ON {on} {}{tail}",
            clauses.join(" ")
        )
        .replace("{row}", &row)
    }
}

fn fill(template: &str, variant: usize) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    let mut hole = 0;
    while let Some(at) = rest.find("{c}") {
        out.push_str(&rest[..at]);
        out.push_str(CONSTANTS[(variant + hole) % CONSTANTS.len()]);
        rest = &rest[at + 3..];
        hole += 1;
    }
    out.push_str(rest);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn a_merge_names_the_base_table_once_as_its_target_or_is_refused(seed in any::<u64>()) {
        let template = Gen(seed | 1).merge();
        for targets in versions() {
            let sql = fill(&template, 0);
            let before = references(&sql, &targets);
            match rewrite(&sql, &targets) {
                Ok(Rewrite::Rewritten(output)) => {
                    let after = references(&output, &targets);
                    prop_assert_eq!(after.len(), 1, "{:?} -> {:?}", sql, output);
                    prop_assert_eq!(after[0].1, Place::MergeTarget, "{:?} -> {:?}", sql, output);
                    prop_assert!(
                        output[after[0].0..].starts_with("public.model_metadata"),
                        "{:?} -> {:?}", sql, output
                    );
                    // The view's row type in a write function's `ROW(…)::<view>` is the
                    // rewriter's own; every other reference to a view is one the client made.
                    let (row_types, views): (Vec<_>, Vec<_>) = references(&output, &views_as_managed())
                        .into_iter()
                        .partition(|(_, place)| *place == Place::RowType);
                    prop_assert_eq!(views.len(), before.len() - 1, "{:?} -> {:?}", sql, output);
                    for (offset, _) in row_types {
                        prop_assert!(output[..offset].ends_with(")::"), "{:?} -> {:?}", sql, output);
                    }
                }
                Ok(Rewrite::Unchanged) => prop_assert!(false, "forwarded unchanged: {:?}", sql),
                Err(error) => prop_assert!(error.position.is_some(), "{:?}: {}", sql, error),
            }
            for variant in 0..3 {
                let text = fill(&template, variant);
                prop_assert_eq!(
                    &*rewrite_cached(&SHARED, &text, &targets),
                    &rewrite(&text, &targets),
                    "{:?}", text
                );
            }
        }
    }
}

#[test]
fn the_generator_reaches_rewrites_and_refusals_at_both_versions() {
    for targets in versions() {
        let (mut rewritten, mut refused) = (0, 0);
        for seed in 1..1_000u64 {
            match rewrite(&fill(&Gen(seed * 2 + 1).merge(), 0), &targets) {
                Ok(Rewrite::Rewritten(_)) => rewritten += 1,
                Ok(Rewrite::Unchanged) => {}
                Err(_) => refused += 1,
            }
        }
        assert!(
            rewritten > 100 && refused > 100,
            "{}: rewritten {rewritten}, refused {refused}",
            targets.version
        );
    }
}

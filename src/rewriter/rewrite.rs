//! The rewriter's entry point: one query string and one version in, the string to send out.

use std::ops::Range;

use sqlparser::tokenizer::{Location, Token};

use super::coverage::Coverage;
use super::identifier::fold_identifier;
use super::lexer;
use super::lexer_agreement;
use super::mention::{comment_after_quote, may_hide_a_name};
use super::postgres_grammar::{self, Place, Reading, Reference};
use super::postgres_parser;
use super::query_functions;
use super::refusal::{self, Undefined};
use super::search_path_catalog;
use super::splice::{self, Edit, TextIndex, Tokens};
use super::statement_edits::{NotParsed, parsed_edits};
use super::statements::{self, Kind, StatementText};
use super::table_shorthand;
use super::targets::VersionTargets;
use crate::model::catalog_substitutes::INFORMATION_SCHEMA;

pub use super::mention::contains_ignore_ascii_case;

/// What to send instead of the client's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewrite {
    /// Send the text as it is.
    Unchanged,
    Rewritten(String),
}

/// A statement names a managed table but could not be read safely, or names a relation the
/// version's clients do not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct RewriteError {
    pub version: String,
    pub reason: String,
    /// 1-based character position in the query string, as in Postgres's error position.
    pub position: Option<usize>,
    /// What the statement names that the version's clients do not have: told as Postgres
    /// tells an undefined table (42P01) or column (42703), which is what an application at
    /// that version, whose introspection does not show it either, must be able to catch.
    pub undefined: Option<Undefined>,
}

impl RewriteError {
    fn message(&self) -> String {
        let RewriteError {
            version, reason, ..
        } = self;
        match &self.undefined {
            Some(Undefined::Relation(relation)) => {
                format!("relation \"{relation}\" does not exist at version {version}: {reason}")
            }
            // The reason is Postgres's wording with the version: `column "x" of relation "t"
            // does not exist at version v2`.
            Some(Undefined::Column) => reason.clone(),
            None => {
                format!("viewgate cannot rewrite this statement for version {version}: {reason}")
            }
        }
    }
}

/// Rewrites the references to `targets`' tables in `sql`.
pub fn rewrite(sql: &str, targets: &VersionTargets) -> Result<Rewrite, RewriteError> {
    if !mentions_managed_table(sql, targets) {
        return Ok(Rewrite::Unchanged);
    }
    finish(sql, &targets.version, analyse(sql, targets).edits)
}

/// Why a statement cannot be rewritten, with a byte offset into the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub offset: Option<usize>,
    /// What it names that does not exist for the version's clients (another version's
    /// view, a managed table by a name the version does not give it, a column).
    pub undefined: Option<Undefined>,
}

/// What the full path learned about one text: the edits (or why there are none), and the byte
/// ranges of the tokens sqlparser read (whitespace and comments left out), which the shape
/// cache checks its own lexer against. `parser_tokens` is `None` when the tokenizer failed.
#[derive(Debug)]
pub struct Analysis {
    pub parser_tokens: Option<Vec<Range<usize>>>,
    pub edits: Result<Vec<Edit>, Failure>,
}

/// Tokenizes, splits, parses and collects the edits of a text that mentions a managed table,
/// then has Postgres's parser confirm them (`check`): the full path, taken on a cache miss.
pub fn analyse(sql: &str, targets: &VersionTargets) -> Analysis {
    if let Some(offset) = comment_after_quote(sql.as_bytes())
        .then(|| postgres_parser::string_continued_after_comment(sql))
        .flatten()
    {
        return Analysis {
            parser_tokens: None,
            edits: Err(Failure {
                reason: refusal::STRING_CONTINUED_AFTER_COMMENT.into(),
                offset: Some(offset),
                undefined: None,
            }),
        };
    }
    let mut reading = read_with_sqlparser(sql, targets);
    if let Some(offset) = lexer_agreement::writes_base_rows(sql)
        .then(|| lexer_agreement::lexers_disagree(sql, reading.parser_tokens.as_deref()))
        .flatten()
    {
        return Analysis {
            parser_tokens: None,
            edits: Err(Failure {
                reason: refusal::LEXERS_DISAGREE.into(),
                offset: Some(offset),
                undefined: None,
            }),
        };
    }
    if !targets.mention_scan().names_in(sql.as_bytes()) {
        // Read only because it may hide a name (`mention::may_hide_a_name`): what Postgres's
        // parser finds decides; sqlparser failing on such a text is no reason to refuse it.
        reading.failure = None;
    }
    Analysis {
        parser_tokens: reading.parser_tokens.take(),
        edits: match reading.refusal.take() {
            Some(refusal) => Err(refusal),
            None => check(sql, targets, reading),
        },
    }
}

/// What sqlparser made of a text: the edits of the statements it read, the first failure,
/// and the byte ranges of the statements it could not read.
#[derive(Debug)]
pub struct ParserReading {
    pub parser_tokens: Option<Vec<Range<usize>>>,
    pub edits: Vec<Edit>,
    pub failure: Option<Failure>,
    pub unread: Vec<Range<usize>>,
    /// A statement sqlparser read but viewgate refuses (it cannot write it exactly): the
    /// whole text is refused, whatever Postgres's parser says.
    pub refusal: Option<Failure>,
    /// Whether a statement sqlparser passes through (DDL) mentions a managed name: only
    /// Postgres's parser reads those (`definitions.rs`).
    pub ddl_mentions: bool,
}

/// sqlparser's reading alone, without Postgres's check (the differential test compares the
/// two).
pub fn read_with_sqlparser(sql: &str, targets: &VersionTargets) -> ParserReading {
    let index = TextIndex::new(sql);
    let failure = |reason: String, location: Option<Location>| Failure {
        reason,
        offset: location.and_then(|l| index.offset(l)),
        undefined: None,
    };
    let mut parser_tokens = Vec::new();
    let statements = match statements::split_recording(sql, &index, Some(&mut parser_tokens)) {
        Ok(statements) => statements,
        Err(e) => {
            return ParserReading {
                parser_tokens: None,
                edits: Vec::new(),
                failure: Some(failure(e.message.clone(), Some(e.location))),
                unread: std::iter::once(0..sql.len()).collect(),
                refusal: None,
                ddl_mentions: true,
            };
        }
    };
    let mut edits = Vec::new();
    let mut first_failure = None;
    let mut refusal = None;
    let mut unread = Vec::new();
    let mut ddl_mentions = false;
    for statement in statements {
        let text = &sql[statement.range.clone()];
        if !mentions_managed_table(text, targets) {
            continue;
        }
        if statement.kind == Kind::PassThrough {
            ddl_mentions |= targets.mention_scan().names_in(text.as_bytes())
                || may_hide_a_name(text.as_bytes());
            continue;
        }
        let statement_edits = match statement.kind {
            Kind::TableShorthand => table_shorthand::edits(&statement, &index, targets),
            _ => {
                let start = statement_start(&statement);
                let range = statement.range.clone();
                match parsed_edits(sql, statement, &index, targets) {
                    Ok(found) => found,
                    Err(NotParsed::Parser(reason, location)) => {
                        first_failure
                            .get_or_insert_with(|| failure(reason, location.or(Some(start))));
                        unread.push(range);
                        Vec::new()
                    }
                    Err(NotParsed::Refused(refused)) => {
                        refusal.get_or_insert(Failure {
                            reason: refused.reason,
                            offset: refused.offset.or_else(|| index.offset(start)),
                            undefined: refused.undefined,
                        });
                        Vec::new()
                    }
                }
            }
        };
        edits.extend(statement_edits);
    }
    ParserReading {
        parser_tokens: Some(parser_tokens),
        edits,
        failure: first_failure,
        unread,
        refusal,
        ddl_mentions,
    }
}

/// sqlparser's edits confirmed by Postgres's parser. Every reference Postgres reads as a
/// managed table is rewritten, and nothing else is rewritten as one: a reference sqlparser
/// did not edit (in a statement it could not read, or in a form it reads differently, such as
/// `SELECT … UNION TABLE t`) is rewritten from Postgres's position, or the statement is
/// refused; a relation edit of sqlparser's that Postgres does not read as a managed table
/// refuses it. A statement Postgres's parser rejects is refused (the fast path sent it here,
/// so it may reach something the rewriter reads): the parser is PostgreSQL 17's, and an
/// older server may accept the text, unread: the ninth red-team pass read base rows behind a
/// `system_user` alias (a keyword since 16) through a `U&` name sqlparser left alone, and the
/// tenth through a function whose body, never judged, built the name at run time. DDL that
/// names a managed table is read by Postgres's parser alone, up to a longer limit, and refused
/// beyond it.
fn check(
    sql: &str,
    targets: &VersionTargets,
    reading: ParserReading,
) -> Result<Vec<Edit>, Failure> {
    let ParserReading {
        edits,
        failure,
        unread,
        ddl_mentions,
        ..
    } = reading;
    let mut postgres = postgres_grammar::managed_references(sql, targets);
    if postgres == Reading::TooLong && ddl_mentions {
        postgres = postgres_grammar::definition_references(sql, targets);
        if postgres == Reading::TooLong {
            return Err(Failure {
                reason: format!(
                    "it holds DDL that names a managed table, and at {} bytes it is longer than the {} bytes PostgreSQL's parser is asked to check; send the DDL on its own",
                    sql.len(),
                    postgres_grammar::MAX_CHECKED_DEFINITION_BYTES
                ),
                offset: None,
                undefined: None,
            });
        }
    }
    let references = match postgres {
        Reading::Parsed(references) => references,
        Reading::TooLong => {
            if let Some(offset) = search_path_catalog::unchecked_setting_change(
                sql,
                targets.has_catalog_substitutes(),
            ) {
                return Err(Failure {
                    reason: format!(
                        "at {} bytes it is longer than the {} bytes PostgreSQL's parser is asked to check, and it may change the search_path or standard_conforming_strings; send that on its own",
                        sql.len(),
                        postgres_grammar::MAX_CHECKED_BYTES
                    ),
                    offset: Some(offset),
                    undefined: None,
                });
            }
            if let Some(offset) = unaccounted_mention(sql, targets, &edits) {
                return Err(Failure {
                    reason: format!(
                        "at {} bytes it is longer than the {} bytes PostgreSQL's parser is asked to check, and it names a managed table where viewgate's own parser made no rewrite; shorten the statement, or name the version's view there",
                        sql.len(),
                        postgres_grammar::MAX_CHECKED_BYTES
                    ),
                    offset: Some(offset),
                    undefined: None,
                });
            }
            return failure.map_or(Ok(edits), Err);
        }
        // Postgres's verdict is the reason (sqlparser's failure, where it had one, gives the
        // position): a text read only for the marks of a function that reads a relation by
        // name (`' xml`, from the property tests) was refused with sqlparser's tokenizer
        // message, as if viewgate, not the grammar, had turned it down.
        Reading::Rejected(message) => {
            return Err(Failure {
                reason: refusal::postgres_rejects(&message),
                offset: failure.and_then(|f| f.offset),
                undefined: None,
            });
        }
        Reading::Unavailable(reason) => {
            return Err(Failure {
                reason: format!("PostgreSQL's parser could not check it ({reason})"),
                offset: failure.and_then(|f| f.offset),
                undefined: None,
            });
        }
    };
    for reference in &references {
        if reference.place == Place::Printer {
            let substituted = !unread.iter().any(|r| r.contains(&reference.offset))
                && edits.iter().any(|e| e.range.contains(&reference.offset));
            if !substituted {
                return Err(Failure {
                    reason: refusal::unsubstituted_printer(&reference.name, &targets.version),
                    offset: Some(reference.offset),
                    undefined: None,
                });
            }
            continue;
        }
        if reference.place == Place::FieldCall {
            return Err(Failure {
                reason: refusal::field_call(&reference.name, &targets.version),
                offset: Some(reference.offset),
                undefined: None,
            });
        }
        if reference.place == Place::AliasedBuiltIn {
            return Err(Failure {
                reason: refusal::aliased_built_in(&reference.name, &targets.version),
                offset: Some(reference.offset),
                undefined: None,
            });
        }
        if reference.place == Place::CatalogPath {
            return Err(Failure {
                reason: refusal::information_schema_path(&targets.version),
                offset: Some(reference.offset),
                undefined: None,
            });
        }
        if reference.place == Place::VerboseExplain {
            return Err(Failure {
                reason: refusal::verbose_explain(&targets.version),
                offset: Some(reference.offset),
                undefined: None,
            });
        }
        if reference.place == Place::ReadingSetting {
            return Err(Failure {
                reason: refusal::reading_setting(),
                offset: Some(reference.offset),
                undefined: None,
            });
        }
        if reference.place == Place::OtherVersion {
            return Err(Failure {
                reason: refusal::not_this_versions(targets, reference),
                offset: Some(reference.offset),
                undefined: refusal::missing_at_version(targets, reference).map(Undefined::Relation),
            });
        }
        let Some(target) = targets.resolve(reference.schema.as_deref(), &reference.name) else {
            continue;
        };
        let view = targets.view_reference(target);
        if reference.place == Place::ViewDefinition && !targets.is_managed(target) {
            return Err(Failure {
                reason: refusal::catalog_definition(&target.table.name, &targets.version),
                offset: Some(reference.offset),
                undefined: None,
            });
        }
        if let (Place::ColumnStorage(command, stored), Some(write)) =
            (reference.place, targets.base_write(target))
        {
            let (table, version) = (&target.table.name, &targets.version);
            return Err(Failure {
                reason: refusal::column_storage(command, stored, table, version, &write.mapping),
                offset: Some(reference.offset),
                undefined: None,
            });
        }
        if let Some(reason) =
            refusal::of_place(reference.place, &target.table.name, &targets.version, &view)
        {
            return Err(Failure {
                reason: refusal::with_library_advice(reason, sql),
                offset: Some(reference.offset),
                undefined: None,
            });
        }
    }
    let mut checked = edits;
    let text = ReferencedText {
        sql,
        tokens: std::cell::OnceCell::new(),
        mentions_conflict: contains_ignore_ascii_case(sql.as_bytes(), b"conflict"),
    };
    for reference in references.iter().filter(|r| r.place != Place::Printer) {
        let covered = !unread.iter().any(|r| r.contains(&reference.offset))
            && checked
                .iter()
                .any(|e| e.relation && e.range.start == reference.offset);
        if !covered {
            checked.push(edit_from_reference(&text, targets, reference)?);
        }
    }
    if let Some(extra) = checked
        .iter()
        .find(|e| e.relation && !references.iter().any(|r| r.offset == e.range.start))
    {
        return Err(Failure {
            reason: "viewgate's parser and PostgreSQL's disagree about a table reference".into(),
            offset: Some(extra.range.start),
            undefined: None,
        });
    }
    Ok(checked)
}

/// For a text Postgres's parser does not check (too long), where sqlparser's `edits` may have
/// missed a reference: the offset of an identifier naming a managed table (or a name pinned
/// elsewhere) that no edit covers and that does not qualify a column (`name.column`), or of a
/// built-in that runs a query from a string (`query_functions.rs`), or the text's start when
/// the lexer cannot read it. Such a name is a relation sqlparser read
/// differently (`… UNION ALL TABLE name`), or a whole-row reference, refused with it.
fn unaccounted_mention(sql: &str, targets: &VersionTargets, edits: &[Edit]) -> Option<usize> {
    let mut tokens = Vec::new();
    if lexer::lex(sql, &mut tokens).is_none() {
        return Some(0);
    }
    let significant: Vec<&lexer::Token> = tokens
        .iter()
        .filter(|token| token.kind != lexer::Kind::Comment)
        .collect();
    let coverage = Coverage::of(edits);
    significant.iter().enumerate().find_map(|(i, token)| {
        let text = &sql[token.start..token.end];
        let name = match token.kind {
            lexer::Kind::Word => fold_identifier(text, false),
            lexer::Kind::QuotedIdentifier => {
                fold_identifier(&text[1..text.len() - 1].replace("\"\"", "\""), true)
            }
            _ => return None,
        };
        // A call that runs a query from a string (its text unchecked, as the rest), another
        // version's view or catalog substitutes, an array type by its internal name.
        let element = name.strip_prefix('_');
        if query_functions::reads(&name, 2).is_some()
            || targets.names_other_version(None, &name)
            || targets.is_other_versions_catalog(&name)
            || element.is_some_and(|element| {
                targets.resolve_table(None, element).is_some()
                    || targets.names_other_version(None, element)
            })
        {
            return Some(token.start);
        }
        let covered = coverage.covers(token.start..token.end);
        let qualifies = significant
            .get(i + 1)
            .is_some_and(|next| &sql[next.start..next.end] == ".");
        // What a version with substitutes sends there, where no edit did: anything
        // `information_schema.` qualifies, a printer, a catalog relation (`pg_stats`) that
        // does not qualify a column.
        if targets.has_catalog_substitutes()
            && !covered
            && (name == INFORMATION_SCHEMA
                || targets.substitute_function(None, &name).is_some()
                || (!qualifies
                    && targets
                        .resolve(None, &name)
                        .is_some_and(|target| !targets.is_managed(target))))
        {
            return Some(token.start);
        }
        targets.resolve_table(None, &name)?;
        (!covered && !qualifies).then_some(token.start)
    })
}

/// What every reference of one text reads of it, read once: a text naming a table thousands
/// of times made reading it again for each reference quadratic (forty-second red-team pass).
struct ReferencedText<'a> {
    sql: &'a str,
    tokens: std::cell::OnceCell<Tokens>,
    /// Whether the word `conflict` is anywhere in the text.
    mentions_conflict: bool,
}

/// The edit for a reference only Postgres's parser could read: the name replaced by the
/// view, the written name kept as alias where the reference has none and may take one.
fn edit_from_reference(
    text: &ReferencedText,
    targets: &VersionTargets,
    reference: &Reference,
) -> Result<Edit, Failure> {
    let sql = text.sql;
    let cannot = |why: &str| Failure {
        reason: format!(
            "it names managed table \"{}\" {why}, which viewgate cannot rewrite",
            reference.name
        ),
        offset: Some(reference.offset),
        undefined: None,
    };
    if reference.place == Place::CopyTo {
        return Err(cannot(
            "in COPY … TO, in syntax viewgate's own parser cannot read",
        ));
    }
    let target = targets
        .resolve(reference.schema.as_deref(), &reference.name)
        .ok_or_else(|| cannot("ambiguously"))?;
    if reference.place == Place::Target
        && text.mentions_conflict
        && targets
            .base_write(target)
            .is_some_and(|write| write.mapping.trigger_backed)
    {
        return Err(cannot(
            "as the target of what may be INSERT … ON CONFLICT through a trigger-backed view (written to the base table), in syntax viewgate's own parser cannot read",
        ));
    }
    if reference.place == Place::CopyFrom
        && targets
            .base_write(target)
            .is_some_and(|write| !write.mapping.trigger_backed)
    {
        return Err(cannot(
            "in COPY … FROM (into the base table, since Postgres cannot copy to this version's view), in syntax viewgate's own parser cannot read",
        ));
    }
    if reference.place == Place::MergeTarget && targets.base_write(target).is_some() {
        return Err(cannot(
            "as the target of MERGE (written to the base table, since PostgreSQL before 17 cannot MERGE into a view), in syntax viewgate's own parser cannot read",
        ));
    }
    let (range, last) = match reference.place {
        // Only the relation of `relation.column%TYPE` is replaced; the column stays.
        Place::ColumnType => postgres_grammar::relation_of_column_extent(sql, reference.offset)
            .map(|range| (range.clone(), range)),
        _ => postgres_grammar::name_extent(sql, reference.offset),
    }
    .ok_or_else(|| cannot("in an unusual spelling"))?;
    let mut view = match reference.place {
        Place::BaseTable => postgres_grammar::renamed::base_reference(targets, target)
            .ok_or_else(|| cannot("without a base table known"))?,
        Place::Granted => postgres_grammar::grants::granted_references(targets, target)
            .ok_or_else(|| cannot("without a base table known"))?,
        _ => targets.view_reference(target),
    };
    let tokens = || text.tokens.get_or_init(|| Tokens::of(sql));
    let takes_alias = matches!(
        reference.place,
        Place::From | Place::Target | Place::MergeTarget
    ) && !reference.aliased
        && !postgres_grammar::after_table_keyword(sql, tokens(), reference.offset);
    let mut range = range;
    if takes_alias {
        (range, view) = postgres_grammar::aliased(sql, tokens(), range, &view, &sql[last]);
    }
    Ok(Edit {
        range,
        text: view,
        relation: true,
    })
}

/// The outcome for `sql` from its edits: spliced, unchanged, or the error (its position in
/// characters, as Postgres counts them). An edit that would start or end inside a token is
/// refused (`splice::between_tokens`).
pub fn finish(
    sql: &str,
    version: &str,
    edits: Result<Vec<Edit>, Failure>,
) -> Result<Rewrite, RewriteError> {
    let cuts_a_token =
        matches!(&edits, Ok(edits) if !edits.is_empty() && !splice::between_tokens(sql, edits));
    if cuts_a_token {
        return finish_between_tokens(
            sql,
            version,
            Err(Failure {
                reason: "a rewrite would cut into a comment, a string or a quoted name".into(),
                offset: None,
                undefined: None,
            }),
        );
    }
    finish_between_tokens(sql, version, edits)
}

/// [`finish`] for edits known to start and end between tokens: the shape cache's, which it
/// keeps as token boundaries (a second lexer pass would cost every cached rewrite).
pub fn finish_between_tokens(
    sql: &str,
    version: &str,
    edits: Result<Vec<Edit>, Failure>,
) -> Result<Rewrite, RewriteError> {
    let error = |failure: Failure| RewriteError {
        version: version.to_owned(),
        undefined: failure.undefined,
        reason: failure.reason,
        position: failure
            .offset
            .and_then(|o| sql.get(..o))
            .map(|before| before.chars().count() + 1),
    };
    match edits {
        Ok(edits) if edits.is_empty() => Ok(Rewrite::Unchanged),
        Ok(edits) => splice::apply(sql, edits)
            .map(Rewrite::Rewritten)
            .ok_or_else(|| {
                error(Failure {
                    reason: "overlapping table references".into(),
                    offset: None,
                    undefined: None,
                })
            }),
        Err(failure) => Err(error(failure)),
    }
}

/// The cheap test run on every statement: does it mention a managed table's name (or, with
/// catalog substitutes, a substituted catalog relation's) at all, in any case? Most
/// statements of most applications do not, and are forwarded without parsing.
pub fn mentions_managed_table(sql: &str, targets: &VersionTargets) -> bool {
    targets.mention_scan().found_in(sql.as_bytes())
}

fn statement_start(statement: &StatementText) -> Location {
    statement
        .tokens
        .iter()
        .find(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|t| t.span.start)
        .unwrap_or(Location::new(1, 1))
}

//! How deep a statement's syntax tree can be, told from its tokens before it is parsed, and a
//! stack deep enough for it.
//!
//! sqlparser reads a chain of binary operators (`a AND b AND …`, `1 + 1 + …`, `x::int::int…`)
//! in a loop, but builds it as a left-deep tree, and every walk over that tree (the
//! reference collector, `Drop`) recurses once per operator. Its recursion limit covers
//! nesting only. A client's 30,000-term chain overflowed a 2 MiB worker thread's stack and
//! aborted the whole proxy (the fifty-third red-team pass). So before a statement is parsed
//! its depth is bounded from its tokens: a statement deeper than [`MAX_EXPRESSION_DEPTH`] is
//! refused, and the parse and its walks run on a stack sized for the bound
//! ([`on_expression_stack`]).

use sqlparser::tokenizer::{Token, TokenWithSpan};

/// The deepest syntax tree the rewriter reads (the bound of [`depth_bound`]): far beyond what
/// an application writes (a 10,000-term `OR` chain is 40,000 tokens), and what
/// [`STACK_PER_LEVEL`] times it allocates stays within a few tens of MiB.
pub const MAX_EXPRESSION_DEPTH: usize = 100_000;

/// Stack one level of the tree may take in the parse and the walks over it. Measured
/// 2026-12-03 in a debug build: a 20,000-term `AND` chain fitted in 2 MiB, 30,000 did not,
/// and 150,000 fitted in 16 MiB (70–110 bytes a level); this allows about 2.5 times that.
const STACK_PER_LEVEL: usize = 256;

/// Stack the rewrite takes besides the tree's depth.
const STACK_BASE: usize = 256 * 1024;

/// An upper bound on the depth of the syntax tree of a statement made of `tokens`: the tokens
/// of an expression chain (those since the last comma at the same bracket level), summed over
/// the enclosing brackets, plus the brackets themselves. Every level of the tree takes at
/// least one token, and a comma ends a chain (list items are siblings), so a bulk INSERT's
/// thousands of rows stay shallow.
pub fn depth_bound(tokens: &[TokenWithSpan]) -> usize {
    let mut chains = vec![0usize];
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for token in tokens {
        match &token.token {
            Token::Whitespace(_) => continue,
            Token::LParen | Token::LBracket | Token::LBrace => {
                chains.push(0);
                depth += 1;
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if chains.len() > 1 {
                    depth -= chains.pop().unwrap_or(0) + 1;
                }
            }
            Token::Comma | Token::SemiColon => {
                if let Some(chain) = chains.last_mut() {
                    depth -= *chain;
                    *chain = 0;
                }
            }
            _ => {
                if let Some(chain) = chains.last_mut() {
                    *chain += 1;
                    depth += 1;
                }
            }
        }
        deepest = deepest.max(depth);
    }
    deepest
}

/// Runs `parse`, which builds and walks a tree at most `depth` levels deep, on a stack deep
/// enough for it: a fresh one where what the thread has left may not do (mapping one costs a
/// few system calls), in place otherwise, which is every ordinary statement.
pub fn on_expression_stack<R>(depth: usize, parse: impl FnOnce() -> R) -> R {
    let needed = STACK_BASE + depth * STACK_PER_LEVEL;
    stacker::maybe_grow(needed, needed, parse)
}

#[cfg(test)]
mod tests {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::Tokenizer;

    use super::*;

    fn bound(sql: &str) -> usize {
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
            .tokenize_with_location()
            .expect("tokenizes");
        depth_bound(&tokens)
    }

    #[test]
    fn a_chain_counts_each_token_and_a_comma_ends_it() {
        assert_eq!(bound("SELECT 1"), 2);
        assert_eq!(bound("SELECT a + b + c FROM t"), 8);
        assert_eq!(bound("SELECT a, b, c"), 2);
        // Brackets add their own level and their chain to the enclosing one.
        assert_eq!(bound("SELECT (a + (b + c))"), 8);
    }

    #[test]
    fn a_bulk_insert_stays_shallow_and_a_long_chain_does_not() {
        let rows = vec!["(1, 'a', -2)"; 10_000].join(", ");
        assert!(bound(&format!("INSERT INTO t VALUES {rows}")) < 10);
        let chain = "true AND ".repeat(50_000);
        assert!(bound(&format!("SELECT 1 WHERE {chain} true")) > MAX_EXPRESSION_DEPTH / 2);
    }

    #[test]
    fn unbalanced_brackets_neither_panic_nor_underflow() {
        assert_eq!(bound(") ) ] }"), 0);
        assert!(bound("((((") >= 4);
    }
}

//! Which migration `migrate complete` and `migrate rollback` act on: the oldest live one (a
//! complete retires the oldest version) or the newest (a rollback undoes the last expand),
//! unless the operator names it by the version it creates (`--version v2`). Named, a command
//! run again after one killed just after its commit finds its work done and says so, rather
//! than go on to the next migration of a chain (whose old version nothing may protect, as
//! clients connected straight to Postgres are invisible to viewgate).

use super::error::MigrateError;
use super::state::Phase;

/// What a command is to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// Act on the migration at this position of the current ones (oldest first).
    At(usize),
    /// The named migration's work is already done (completed, or rolled back).
    AlreadyDone,
}

/// The migration `migrate complete` completes, of `current` (each migration not rolled back,
/// oldest first: the version it creates, its phase): the oldest not completed, which must be
/// the one `named` if one is.
pub fn for_complete(
    current: &[(&str, Phase)],
    named: Option<&str>,
) -> Result<Chosen, MigrateError> {
    let oldest_live = current
        .iter()
        .position(|(_, phase)| *phase != Phase::Completed);
    let Some(named) = named else {
        return oldest_live
            .map(Chosen::At)
            .ok_or_else(|| MigrateError::State("there is no live migration to complete".into()));
    };
    let Some(position) = current.iter().rposition(|(version, _)| *version == named) else {
        return Err(MigrateError::State(format!(
            "no migration to {named} is started (or it was rolled back): there is nothing of it to complete"
        )));
    };
    if current[position].1 == Phase::Completed {
        return Ok(Chosen::AlreadyDone);
    }
    // The named one is not completed: the oldest live is it or one before it.
    let oldest = oldest_live.unwrap_or(position);
    if oldest == position {
        Ok(Chosen::At(position))
    } else {
        Err(MigrateError::State(format!(
            "the migration to {} (started before the one to {named}) is not completed yet: complete it first",
            current[oldest].0
        )))
    }
}

/// The migration `migrate rollback` rolls back, of `current` (as for [`for_complete`]): the
/// newest not completed, which must be the one `named` if one is; `rolled_back` says whether a
/// migration to `named` was rolled back.
pub fn for_rollback(
    current: &[(&str, Phase)],
    named: Option<&str>,
    rolled_back: bool,
) -> Result<Chosen, MigrateError> {
    let newest_live = current
        .iter()
        .rposition(|(_, phase)| *phase != Phase::Completed);
    let Some(named) = named else {
        return newest_live.map(Chosen::At).ok_or_else(|| {
            MigrateError::State(
                "there is no migration to roll back (none started, or all completed)".into(),
            )
        });
    };
    match current.iter().rposition(|(version, _)| *version == named) {
        None if rolled_back => Ok(Chosen::AlreadyDone),
        None => Err(MigrateError::State(format!(
            "no migration to {named} was started: there is nothing of it to roll back"
        ))),
        Some(position) if current[position].1 == Phase::Completed => {
            Err(MigrateError::State(format!(
                "the migration to {named} is completed: its old version is retired and the schema contracted, which a rollback cannot undo (write a migration that goes back)"
            )))
        }
        Some(position) if Some(position) == newest_live => Ok(Chosen::At(position)),
        Some(_) => Err(MigrateError::State(format!(
            "the migration to {} was started after the one to {named}: roll it back first",
            newest_live.map_or("?", |newest| current[newest].0)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: [(&str, Phase); 3] = [
        ("v2", Phase::Completed),
        ("v3", Phase::Live),
        ("v4", Phase::Backfilling),
    ];

    #[test]
    fn unnamed_the_oldest_live_is_completed_and_the_newest_rolled_back() {
        assert_eq!(for_complete(&CHAIN, None).unwrap(), Chosen::At(1));
        assert_eq!(for_rollback(&CHAIN, None, false).unwrap(), Chosen::At(2));
        let done = [("v2", Phase::Completed)];
        assert!(for_complete(&done, None).is_err());
        assert!(for_rollback(&done, None, false).is_err());
    }

    #[test]
    fn named_a_completed_or_rolled_back_migration_is_done_already() {
        assert_eq!(
            for_complete(&CHAIN, Some("v2")).unwrap(),
            Chosen::AlreadyDone
        );
        assert_eq!(for_complete(&CHAIN, Some("v3")).unwrap(), Chosen::At(1));
        assert_eq!(
            for_rollback(&CHAIN, Some("v4"), false).unwrap(),
            Chosen::At(2)
        );
        assert_eq!(
            for_rollback(&CHAIN, Some("v5"), true).unwrap(),
            Chosen::AlreadyDone
        );
    }

    #[test]
    fn named_out_of_order_or_unknown_is_refused_saying_what_to_do() {
        let later = for_complete(&CHAIN, Some("v4")).unwrap_err().to_string();
        assert!(
            later.contains(
                "the migration to v3 (started before the one to v4) is not completed yet"
            ),
            "{later}"
        );
        let earlier = for_rollback(&CHAIN, Some("v3"), false)
            .unwrap_err()
            .to_string();
        assert!(
            earlier.contains(
                "the migration to v4 was started after the one to v3: roll it back first"
            ),
            "{earlier}"
        );
        let completed = for_rollback(&CHAIN, Some("v2"), false)
            .unwrap_err()
            .to_string();
        assert!(completed.contains("is completed"), "{completed}");
        assert!(for_complete(&CHAIN, Some("v9")).is_err());
        assert!(for_rollback(&CHAIN, Some("v9"), false).is_err());
    }
}

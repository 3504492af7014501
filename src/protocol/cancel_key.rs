//! The layout of the cancel secret viewgate hands its clients, so that a CancelRequest landing
//! on any replica can be sent to the replica that owns the session (PgBouncer 1.19's peering).
//!
//! The secret is the 32-bit word of BackendKeyData (protocol 3.0); the process id beside it is
//! the upstream backend's real one and carries nothing of ours. With peering on, the secret is
//! read from its most significant bit down as
//!
//! ```text
//!   1 bit   forwarded: set by the replica that forwards the request, never in an issued key
//!   8 bits  the owning replica's peer id, 1..=MAX_PEER_ID
//!  23 bits random
//! ```
//!
//! so a replica sees from the key alone whose session it is and whether a peer already
//! forwarded it (a forwarded request is never forwarded again: no loops, even when two
//! replicas' configurations disagree). With peering off the whole word is random, as before.
//! The price of peering is guessing: 23 random bits instead of 32 (the process id must match
//! too, as in Postgres).

/// Bits of the secret that hold the owning replica's peer id.
pub const PEER_ID_BITS: u32 = 8;

/// The largest peer id the secret can carry; 0 is not a peer id.
pub const MAX_PEER_ID: u32 = (1 << PEER_ID_BITS) - 1;

/// Set in a CancelRequest one replica forwards to another.
const FORWARDED_BIT: u32 = 1 << 31;

/// Bits of the secret that are random when peering is on.
const RANDOM_BITS: u32 = 31 - PEER_ID_BITS;

const RANDOM_MASK: u32 = (1 << RANDOM_BITS) - 1;

/// The secret of a new key from `random` bits: all of them with peering off (`peer_id` unset),
/// else the owning replica's id and the low random bits.
pub fn issue_secret(peer_id: Option<u32>, random: u32) -> u32 {
    match peer_id {
        None => random,
        Some(id) => ((id & MAX_PEER_ID) << RANDOM_BITS) | (random & RANDOM_MASK),
    }
}

/// What a received secret says, with peering on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedSecret {
    /// The replica that issued it.
    pub peer_id: u32,
    /// Whether another replica already forwarded it.
    pub forwarded: bool,
    /// The secret as issued (the forwarded bit cleared), which the owner looks up.
    pub issued: u32,
}

/// Reads a received secret's peer id and forwarded mark.
pub fn read_secret(secret: u32) -> ReceivedSecret {
    ReceivedSecret {
        peer_id: (secret >> RANDOM_BITS) & MAX_PEER_ID,
        forwarded: secret & FORWARDED_BIT != 0,
        issued: secret & !FORWARDED_BIT,
    }
}

/// The secret to send when forwarding an issued one to its owner.
pub fn mark_forwarded(issued: u32) -> u32 {
    issued | FORWARDED_BIT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_secret_names_its_peer_and_is_not_forwarded() {
        for id in [1, 2, 77, MAX_PEER_ID] {
            for random in [0, 1, 0x7fff_ffff, u32::MAX, 0xdead_beef] {
                let secret = issue_secret(Some(id), random);
                let read = read_secret(secret);
                assert_eq!(read.peer_id, id);
                assert!(!read.forwarded);
                assert_eq!(read.issued, secret);
                assert_eq!(secret & RANDOM_MASK, random & RANDOM_MASK);
                let forwarded = read_secret(mark_forwarded(secret));
                assert_eq!(forwarded.peer_id, id);
                assert!(forwarded.forwarded);
                assert_eq!(forwarded.issued, secret);
            }
        }
    }

    #[test]
    fn without_peering_the_whole_secret_is_random() {
        assert_eq!(issue_secret(None, 0xdead_beef), 0xdead_beef);
        assert_eq!(RANDOM_BITS, 23);
    }
}

//! Cancel requests across replicas: where a CancelRequest goes (one of this replica's sessions,
//! the peer replica that owns the session, or nowhere) and how it is forwarded to a peer.
//!
//! Behind a load balancer a client's CancelRequest arrives on a new connection, which may land
//! on any replica. With peering configured (`peer_id`, `peers`), every cancel key names the
//! replica that issued it (`protocol::cancel_key`); a replica that receives a key naming a peer
//! sends the request on to that peer's client port with the key marked forwarded, and the
//! owner handles it as its own. A forwarded request is never forwarded again, so replicas whose
//! configurations disagree cannot bounce a request between them. As in Postgres, the requester
//! is told nothing either way, and a peer that is down or silent costs the receiving replica
//! one connection attempt bounded by `PEER_CANCEL_TIMEOUT`.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::protocol::cancel_key::{mark_forwarded, read_secret};
use crate::protocol::startup::encode_cancel_request;

/// How long forwarding a CancelRequest to a peer may take, connecting included.
pub const PEER_CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// This replica's peer id and the other replicas' client addresses.
#[derive(Debug, Default)]
pub struct Peers {
    own_id: Option<u32>,
    addresses: HashMap<u32, String>,
}

/// Where a received CancelRequest goes.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelRoute<'a> {
    /// One of this replica's sessions, found by this secret (as it was issued).
    Local(Vec<u8>),
    /// Another replica's session: send this secret (marked forwarded) to the peer.
    Forward {
        peer_id: u32,
        address: &'a str,
        secret: [u8; 4],
    },
    /// Nowhere.
    Dropped(DropReason),
}

/// Why a CancelRequest is dropped without being looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("its key names peer {0}, which is not among this replica's peers")]
    UnknownPeer(u32),
    #[error(
        "it was forwarded by another replica but names peer {0}, not this one (do the replicas' peer settings agree?)"
    )]
    ForwardedForAnother(u32),
    #[error("its key is not the 4 bytes viewgate issues")]
    KeyLength,
}

impl Peers {
    pub fn from_config(config: &Config) -> Self {
        Peers {
            own_id: config.peer_id,
            addresses: config
                .peers
                .iter()
                .map(|peer| (peer.id, peer.address.clone()))
                .collect(),
        }
    }

    /// Where a CancelRequest with `secret` goes. Without peering every key is looked up here.
    pub fn route(&self, secret: &[u8]) -> CancelRoute<'_> {
        let Some(own_id) = self.own_id else {
            return CancelRoute::Local(secret.to_vec());
        };
        let Ok(word) = <[u8; 4]>::try_from(secret) else {
            return CancelRoute::Dropped(DropReason::KeyLength);
        };
        let received = read_secret(u32::from_be_bytes(word));
        if received.peer_id == own_id {
            return CancelRoute::Local(received.issued.to_be_bytes().to_vec());
        }
        if received.forwarded {
            return CancelRoute::Dropped(DropReason::ForwardedForAnother(received.peer_id));
        }
        match self.addresses.get(&received.peer_id) {
            Some(address) => CancelRoute::Forward {
                peer_id: received.peer_id,
                address,
                secret: mark_forwarded(received.issued).to_be_bytes(),
            },
            None => CancelRoute::Dropped(DropReason::UnknownPeer(received.peer_id)),
        }
    }
}

/// Sends a CancelRequest to a peer's client port and waits until the peer has read it (it
/// closes the connection, as Postgres does), within `PEER_CANCEL_TIMEOUT`.
pub async fn forward(address: &str, process_id: u32, secret: &[u8]) -> std::io::Result<()> {
    let request = encode_cancel_request(process_id, secret);
    let send = async {
        let mut tcp = TcpStream::connect(address).await?;
        tcp.write_all(&request).await?;
        let _ = tcp.read_u8().await;
        Ok(())
    };
    tokio::time::timeout(PEER_CANCEL_TIMEOUT, send)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PeerConfig;
    use crate::protocol::cancel_key::issue_secret;

    fn peers(own_id: Option<u32>) -> Peers {
        Peers::from_config(&Config {
            peer_id: own_id,
            peers: vec![PeerConfig {
                id: 2,
                address: "b:6432".into(),
            }],
            ..Config::default()
        })
    }

    fn bytes(word: u32) -> [u8; 4] {
        word.to_be_bytes()
    }

    #[test]
    fn keys_go_to_their_owner_once() {
        let peers = peers(Some(1));
        let own = issue_secret(Some(1), 0x1234);
        assert_eq!(
            peers.route(&bytes(own)),
            CancelRoute::Local(bytes(own).to_vec())
        );
        // Forwarded to us by a peer: looked up as issued.
        let forwarded_own = mark_forwarded(own);
        assert_eq!(
            peers.route(&bytes(forwarded_own)),
            CancelRoute::Local(bytes(own).to_vec())
        );
        let theirs = issue_secret(Some(2), 0x1234);
        assert_eq!(
            peers.route(&bytes(theirs)),
            CancelRoute::Forward {
                peer_id: 2,
                address: "b:6432",
                secret: bytes(mark_forwarded(theirs)),
            }
        );
        // Never forwarded twice.
        assert_eq!(
            peers.route(&bytes(mark_forwarded(theirs))),
            CancelRoute::Dropped(DropReason::ForwardedForAnother(2))
        );
        let unknown = issue_secret(Some(3), 0x1234);
        assert_eq!(
            peers.route(&bytes(unknown)),
            CancelRoute::Dropped(DropReason::UnknownPeer(3))
        );
        assert_eq!(
            peers.route(&[1, 2, 3, 4, 5, 6, 7, 8]),
            CancelRoute::Dropped(DropReason::KeyLength)
        );
    }

    #[test]
    fn without_peering_every_key_is_local() {
        let peers = peers(None);
        let theirs = bytes(issue_secret(Some(2), 0x1234));
        assert_eq!(peers.route(&theirs), CancelRoute::Local(theirs.to_vec()));
    }

    #[tokio::test]
    async fn a_peer_that_is_down_or_silent_costs_a_bounded_wait() {
        // Nothing listens: refused at once.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = closed.local_addr().unwrap().to_string();
        drop(closed);
        assert!(forward(&address, 1, &[0; 4]).await.is_err());
        // Accepts and never closes: the timeout ends it.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap().to_string();
        let hold = tokio::spawn(async move {
            let (connection, _) = silent.accept().await.unwrap();
            tokio::time::sleep(PEER_CANCEL_TIMEOUT * 3).await;
            drop(connection);
        });
        let started = std::time::Instant::now();
        let error = forward(&address, 1, &[0; 4]).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < PEER_CANCEL_TIMEOUT * 2);
        hold.abort();
    }
}

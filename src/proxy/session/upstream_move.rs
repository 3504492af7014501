//! Moving a session to another upstream, on the switchboard's requests (`switch/`), with
//! both pumps stopped: prepare a logged-in connection carrying the session's state beside the
//! old one, then swap to it (commit) or drop it (abort).

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncWriteExt;

use super::Session;
use crate::protocol::backend;
use crate::protocol::frame::encode_message;
use crate::protocol::frontend;
use crate::protocol::limits::UPSTREAM_MESSAGE_MAX_LEN;
use crate::protocol::startup::startup_setting;
use crate::proxy::cancel::UpstreamKey;
use crate::proxy::error::SessionError;
use crate::proxy::pump::Direction;
use crate::proxy::reconnect::{self, SwitchPlan};
use crate::proxy::switch::{PrepareError, SessionControl};
use crate::router::version_command::VERSION_SETTING;
use crate::router::{ConformingStrings, Refusal, SessionRouter};

impl Session {
    /// Carries out a switch request with both pumps stopped.
    pub(super) async fn obey(&mut self, control: SessionControl) -> Result<(), SessionError> {
        match control {
            SessionControl::Prepare { plan, reply } => {
                let result = self.prepare_move(&plan).await;
                let _ = reply.send(result);
            }
            SessionControl::Commit { reply } => {
                let result = self.commit_move().await;
                let _ = reply.send(());
                result?;
            }
            SessionControl::Abort { reply } => {
                if let Some(pending) = self.pending.take() {
                    pending.discard().await;
                }
                let _ = reply.send(());
            }
            SessionControl::FollowRouting => self.follow_routing(),
        }
        Ok(())
    }

    /// Opens and sets up the connection to the plan's upstream; the old one stays in use.
    async fn prepare_move(&mut self, plan: &SwitchPlan) -> Result<(), PrepareError> {
        let who = format!(
            "session of user \"{}\" on database \"{}\"",
            self.startup.user(),
            self.startup.database()
        );
        if !self.progress.quiet()
            || !self.from_upstream.is_drained()
            || !self.from_client.at_message_boundary()
        {
            return Err(PrepareError::NotAtBoundary { who });
        }
        if let Some(old) = self.pending.take() {
            old.discard().await;
        }
        let mut to_client = BytesMut::new();
        // What the session forwarded only as read with standard_conforming_strings on: a
        // backslash near a managed table of its version (`route` refuses such text otherwise).
        let targets = self
            .router
            .as_ref()
            .and_then(|router| router.assignment())
            .map(|assignment| assignment.targets().clone());
        let read_as_conforming = |text: &[u8]| {
            text.contains(&b'\\')
                && targets.as_deref().is_some_and(|targets| {
                    Refusal::backslashes(targets, text, ConformingStrings::Off).is_some()
                })
        };
        // The new backend starts at the version the session is served at now, not the one
        // it logged in at: a statement Bound first after the move is told nothing ahead of it
        // (the nineteenth red-team pass had such a Bind written as the login's version).
        let startup = match self.router.as_ref().and_then(SessionRouter::version) {
            Some(version) => self.startup.with_setting(VERSION_SETTING, Some(version)),
            None => self.startup.clone(),
        };
        let prepared = reconnect::prepare(
            &mut self.upstream,
            &mut to_client,
            startup,
            plan,
            &read_as_conforming,
        )
        .await;
        if !to_client.is_empty() {
            let _ = self.client.write_all(&to_client).await;
            let _ = self.client.flush().await;
        }
        match prepared {
            Ok(reconnected) => {
                self.pending = Some(reconnected);
                Ok(())
            }
            Err(source) => Err(PrepareError::Reconnect { who, source }),
        }
    }

    /// Swaps to the prepared connection and ends the old one. The client keeps its cancel
    /// key (now pointing at the new backend) and hears of every parameter whose value the new
    /// server reports differently; that happens here, between two messages of its stream.
    async fn commit_move(&mut self) -> Result<(), SessionError> {
        let Some(reconnected) = self.pending.take() else {
            return Ok(());
        };
        let mut old = std::mem::replace(&mut self.upstream, reconnected.stream);
        let _ = old.write_all(&frontend::TERMINATE_MESSAGE).await;
        let _ = old.shutdown().await;
        drop(old);
        let login = reconnected.login;
        self.startup = reconnected.startup;
        self.from_upstream = Direction::new(login.leftover, UPSTREAM_MESSAGE_MAX_LEN, false);
        let key = UpstreamKey {
            target: self.state.upstream.load_full(),
            process_id: login.process_id,
            secret: login.secret,
        };
        if let Some(registration) = &self.cancel_key {
            registration.repoint(key.clone());
        }
        if let Some(card) = self.account.card() {
            card.served_by(key.process_id);
        }
        self.upstream_key = Some(key);
        // The new backend started from the startup packet the move sent: it has the version
        // in it, not anything the proxy set on the old one.
        self.upstream_version = startup_setting(&self.startup.params, VERSION_SETTING);
        if let Some(router) = self.router.as_mut() {
            router.started_upstream_at(self.upstream_version.as_deref());
            router.moved_upstream();
        }
        let mut reports = BytesMut::new();
        for (name, value) in login.parameters {
            let known = self.parameters.iter_mut().find(|(known, _)| *known == name);
            match known {
                Some(entry) if entry.1 == value => continue,
                Some(entry) => entry.1 = value.clone(),
                None => self.parameters.push((name.clone(), value.clone())),
            }
            encode_message(&mut reports, backend::PARAMETER_STATUS, |b| {
                b.put_slice(name.as_bytes());
                b.put_u8(0);
                b.put_slice(value.as_bytes());
                b.put_u8(0);
            });
        }
        if !reports.is_empty() {
            let written = async {
                self.client.write_all(&reports).await?;
                self.client.flush().await
            };
            written.await.map_err(|_| SessionError::ClientGone)?;
        }
        tracing::debug!("session moved to the new upstream");
        Ok(())
    }
}
